"""The per-step CPU tool of the sandbox run measures real runs and names every step it wraps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_it_runs_real_sandboxes_and_prints_each_step() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.sandbox_steps", "3"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 runs (cgroup ") and "ms of process CPU per run" in lines[0]
    for step in ("set-up", "spawn request", "monitor", "samples", "clean-up"):
        assert any(line.strip().startswith(step) and "calls" in line for line in lines[1:]), step
