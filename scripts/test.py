#!/usr/bin/env python3
"""The project's test command: venv, lint, type check, tests. Extra arguments go to pytest.

Usage: python3 scripts/test.py [pytest args]
"""

from __future__ import annotations

import os
import subprocess
import sys

from _venv import ROOT, ensure_venv


def main() -> int:
    python = str(ensure_venv("test,local"))
    env = dict(os.environ, DATAHUB_TELEMETRY_ENABLED="false", PYTHONDONTWRITEBYTECODE="1")
    steps = [
        ("ruff", [python, "-m", "ruff", "check", "executor", "tests", "scripts", "bench"]),
        ("mypy", [python, "-m", "mypy", "executor"]),
        ("pytest", [python, "-m", "pytest", "-ra", *sys.argv[1:]]),
    ]
    for name, cmd in steps:
        print(f"== {name}", flush=True)
        code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        if code != 0:
            print(f"== {name} failed with exit code {code}", flush=True)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
