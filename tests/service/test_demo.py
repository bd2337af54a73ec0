"""``remote-executor demo`` runs the real path and exits 0 (the README's first command)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .processes import ROOT


@pytest.mark.cli
@pytest.mark.slow
def test_demo_exits_0_with_a_successful_ingestion_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAHUB_", "REMOTE_EXECUTOR_"))}
    env["TMPDIR"] = str(tmp_path)  # where the demo makes its temporary state dir
    result = subprocess.run(
        [sys.executable, "-m", "executor", "demo", "--venv-root", str(ROOT / ".cache" / "venvs")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[demo] final status: SUCCESS" in result.stdout
    assert "[demo] ingested 12 aspects of 3 datasets" in result.stdout
    assert "written=12" in result.stdout  # not the 0 an async sink reports before it flushed
    assert "[status] " in result.stdout  # the wait says where it is
    removed = re.search(r"\[demo\] removed (\S+)", result.stdout)
    assert removed is not None and not Path(removed.group(1)).exists()
    assert list(tmp_path.glob("remote-executor-demo-*")) == [], "the demo left its state dir behind"
