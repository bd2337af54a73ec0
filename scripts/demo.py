#!/usr/bin/env python3
"""Run the demo: a local control plane, an executor, a real recipe, a printed result.

Usage: python3 scripts/demo.py [remote-executor demo args]
"""

from __future__ import annotations

import subprocess
import sys

from _venv import ROOT, ensure_venv


def main() -> int:
    python = str(ensure_venv("local"))
    cmd = [python, "-m", "executor", "demo", *sys.argv[1:]]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
