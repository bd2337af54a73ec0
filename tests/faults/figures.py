"""The fault suite's figures: one row per test, printed as a table at the end and kept as JSON.

The ``world`` fixture puts a test's row into the test's report (``user_properties``), so the
rows reach the process that prints the summary whether the suite runs in one process or in
xdist workers. Loaded from ``tests/conftest.py``: an xdist controller loads no conftest below
``tests/``, and it is the one that gets every report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROW = "fault-figures"
OUT = ROOT / ".cache" / "fault-figures.json"
COLUMNS = ("runs", "completed", "duplicates", "lost", "orphans")
REPORTED: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        REPORTED.extend(value for name, value in report.user_properties if name == ROW)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not REPORTED or hasattr(config, "workerinput"):
        return
    rows = sorted(REPORTED, key=lambda row: str(row["test"]))
    width = max(len(str(row["test"])) for row in rows)
    lines = [(row["test"], *(row[c] for c in COLUMNS)) for row in rows]
    lines.append(("total", *(sum(row[c] for row in rows) for c in COLUMNS)))
    terminalreporter.section("fault suite figures")
    terminalreporter.line(f"{'test':<{width}}  " + "  ".join(COLUMNS))
    for name, *values in lines:
        cells = "  ".join(f"{v:>{len(c)}}" for v, c in zip(values, COLUMNS, strict=True))
        terminalreporter.line(f"{name:<{width}}  {cells}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1))
