#!/usr/bin/env python3
"""The project's test command: venv, lint, type check, tests. Extra arguments go to pytest.

Usage: python3 scripts/test.py [pytest args]

The suite runs in parallel (pytest-xdist, ``WORKERS`` processes, ``--dist loadgroup``): its
tests mostly wait on servers, subprocesses and podman, so more workers than cores pay off.
mypy runs beside pytest (its output is shown after pytest's): it needs a core for a while.
Arguments that name test files or node ids (``tests/unit/test_config.py``, ``...::test_x``)
run serially in one process, the way one debugs a file; directories, ``-k`` or ``-m`` alone
keep the parallel run. ``-n N`` (``-n 0``: serial) or ``-p no:xdist`` decides either way.
See docs/testing.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from _venv import ROOT, ensure_venv

WORKERS = 4
"""xdist workers for the whole suite: measured on 2 cores (docs/testing.md has the figures)."""
TAKES_PATH = frozenset({"--ignore", "--ignore-glob", "--deselect", "--rootdir", "--basetemp", "-c",
                        "--confcutdir", "--junitxml", "--junit-xml", "--json"})


def names_tests(arg: str) -> bool:
    """True when ``arg`` is a test file or node id (not a directory: those stay parallel)."""
    if arg.startswith("-"):
        return False
    path = arg.split("::", 1)[0]
    return "::" in arg or (path.endswith(".py") and (ROOT / path).is_file())


def pytest_args(args: Sequence[str]) -> list[str]:
    """The user's pytest args after the worker count and distribution they did not choose."""
    if any((a == "-p" and b == "no:xdist") or a == "-pno:xdist" for a, b in zip(args, [*args[1:], ""])):
        return list(args)
    chosen = {a.split("=", 1)[0] for a in args}
    extra = []
    if not any(a.startswith("-n") or a == "--numprocesses" for a in chosen):
        serial = any(names_tests(a) for prev, a in zip(["", *args], args) if prev not in TAKES_PATH)
        extra += ["-n", "0" if serial else str(WORKERS)]
    if "--dist" not in chosen:
        extra += ["--dist", "loadgroup"]
    return [*extra, *args]


def main() -> int:
    """ruff, then pytest with mypy beside it (its output, captured, is shown after pytest's)."""
    python = str(ensure_venv("test,local"))
    env = dict(os.environ, DATAHUB_TELEMETRY_ENABLED="false", PYTHONDONTWRITEBYTECODE="1")
    print("== ruff", flush=True)
    code = subprocess.run([python, "-m", "ruff", "check", "executor", "tests", "scripts", "bench"],
                          cwd=ROOT, env=env).returncode
    if code != 0:
        print(f"== ruff failed with exit code {code}", flush=True)
        return code
    with tempfile.TemporaryFile("w+") as mypy_out:
        mypy = subprocess.Popen([python, "-m", "mypy", "executor"], cwd=ROOT, env=env, stdout=mypy_out,
                                stderr=subprocess.STDOUT, text=True)
        print("== pytest (mypy runs meanwhile)", flush=True)
        tests = subprocess.run([python, "-m", "pytest", "-ra", *pytest_args(sys.argv[1:])], cwd=ROOT,
                               env=env).returncode
        checked = mypy.wait()
        mypy_out.seek(0)
        print("== mypy", flush=True)
        print(mypy_out.read(), end="", flush=True)
    for name, step_code in (("mypy", checked), ("pytest", tests)):
        if step_code != 0:
            print(f"== {name} failed with exit code {step_code}", flush=True)
    return checked or tests


if __name__ == "__main__":
    sys.exit(main())
