"""An idle executor imports no botocore: the SQS calls have no client, the Secrets Manager store
imports it only when one is made (about 8 MB of RSS at rest, docs/performance-log.md). Nor urllib3:
the GMS and SQS calls run on the executor's own connections (``datahub.http_pool``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_service_modules_import_no_botocore() -> None:
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in sorted((ROOT / "executor").rglob("*.py"))
        if not path.relative_to(ROOT).as_posix().startswith("executor/local/") and path.name != "__main__.py"
    ]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from executor.secrets.aws_sm import AwsSecretsManagerStore\n"
        "AwsSecretsManagerStore('us-east-1', client=object())\n"  # a store with its own client
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            check=True)
    loaded = json.loads(result.stdout)
    assert "executor.queue.sqs" in loaded and "executor.secrets.aws_sm" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("botocore", "boto3", "urllib3", "requests")] == []
