"""docs/testing.md's commands, as written: each picks the workers the doc says and runs.

Every ``python3 scripts/test.py ARGS`` line of the doc is checked against what ``scripts/test.py``
does with ARGS (its ``pytest_args``: parallel or serial, as the line's comment says) and then run
as that pytest command, on a small selection so that the suite does not run itself. The whole
command (ruff, mypy, the full suite) is what CI runs (``.ci/run``). The doc's plain-pytest quick
loop is run as written.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.docs.doccmds import ROOT, blocks
from tests.fixtures.parallel import NESTED

DOC = ROOT / "docs" / "testing.md"
NESTED_ENV = {**os.environ, NESTED: "1"}
"""The nested runs stay out of the parallel run's gate (``tests.fixtures.parallel.NESTED``)."""
NARROWED = {
    (): ["tests/unit/test_backoff.py"],
    ("tests/sandbox",): ["-k", "test_values"],
    ("tests/unit/test_config.py",): [],
    ("-n", "2", "tests/faults/test_kill.py"): ["--collect-only"],
    ("-m", "not image"): ["tests/unit/test_backoff.py"],
}
"""What a nested run adds to a documented line: a few fast tests, not the suite (the example
fault file is only collected: its executors take a minute)."""


def load_test_script() -> ModuleType:
    """``scripts/test.py`` as a module (it imports ``_venv`` from its own folder)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location("project_test_script", ROOT / "scripts" / "test.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def documented() -> list[str]:
    return [command for block in blocks(DOC) for command in block.commands()]


def script_lines() -> list[list[str]]:
    """The ARGS of each ``python3 scripts/test.py ARGS`` line of the doc."""
    return [shlex.split(c)[2:] for c in documented() if c.startswith("python3 scripts/test.py")]


def workers(args: list[str]) -> str:
    chosen = args[args.index("-n") + 1]
    return "serial" if chosen == "0" else f"{chosen} workers"


EXPECTED = {
    (): "4 workers",
    ("tests/sandbox",): "4 workers",
    ("tests/unit/test_config.py",): "serial",
    ("-n", "2", "tests/faults/test_kill.py"): "2 workers",
    ("-m", "not image"): "4 workers",
}
"""What each documented line says in its comment: the whole suite, a directory and a mark run in
parallel, a file serially, ``-n N`` chooses."""


def test_each_documented_line_picks_the_workers_its_comment_says() -> None:
    script = load_test_script()
    lines = script_lines()
    assert {tuple(a) for a in lines} == set(EXPECTED), "docs/testing.md's lines changed: update EXPECTED"
    for args in lines:
        assert workers(script.pytest_args(args)) == EXPECTED[tuple(args)], args


@pytest.mark.parametrize("args", list(EXPECTED), ids=lambda a: " ".join(a) or "the whole suite")
def test_each_documented_line_runs(args: tuple[str, ...]) -> None:
    """The pytest command the script makes of the line, run (narrowed to a few fast tests)."""
    command = [*load_test_script().pytest_args(list(args)), *NARROWED[args]]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *command],
                          cwd=ROOT, env=NESTED_ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_the_quick_loop_runs_as_written() -> None:
    quick = [c for c in documented() if c.startswith(".venv/bin/python -m pytest")]
    assert quick == [".venv/bin/python -m pytest tests/unit -q -x"]
    python = Path(sys.executable)  # the venv the suite runs in is the doc's .venv (or a copy of it)
    done = subprocess.run([str(python), *shlex.split(quick[0])[1:], "-p", "no:cacheprovider"],
                          cwd=ROOT, env=NESTED_ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
