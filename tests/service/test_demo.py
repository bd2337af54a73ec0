"""``remote-executor demo`` runs the real path and exits 0 (the README's first command)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from .processes import ROOT


@pytest.mark.cli
@pytest.mark.slow
def test_demo_exits_0_with_a_successful_ingestion() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAHUB_", "REMOTE_EXECUTOR_"))}
    result = subprocess.run(
        [sys.executable, "-m", "executor", "demo", "--venv-root", str(ROOT / ".cache" / "venvs")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    kept = re.search(r"delete (\S+) when done", result.stdout)
    if kept:
        shutil.rmtree(kept.group(1), ignore_errors=True)  # the demo keeps its logs for the user
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[demo] final status: SUCCESS" in result.stdout
    assert "[demo] ingested 12 aspects of 3 datasets" in result.stdout
    assert "written=12" in result.stdout  # not the 0 an async sink reports before it flushed
    assert "[status] " in result.stdout  # the wait says where it is
