"""The bench command keeps working: its quick mode runs every row, and its figures add up.

``test_quick_bench_prints_every_row`` runs ``python3 bench/run.py --quick`` as a user would
(it makes ``bench/.venv-celery`` with Celery on first use, about a minute) and checks that the
table has every measure on every side and that each target is marked. No figure is asserted:
this shared machine's speed is not the test's business.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cost_rows import CEILING, CORES
from bench.floor_rows import BARE, BARE_SANDBOX
from bench.rows import CPU_TASK, TPUT
from bench.stats import Figures, percentile
from bench.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_FLOORS = ("floor (a pipe)", "floor (a pipe into a file)")


def test_percentiles_interpolate() -> None:
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)


def test_table_has_ratio_and_spread_of_repeat_medians() -> None:
    figures = Figures()
    figures.add("pickup", "executor", [10.0, 12.0, 14.0], "ms")
    figures.add("pickup", "executor", [20.0], "ms")
    figures.add("pickup", "celery", [5.0, 7.0], "ms")
    table = figures.table()
    mine = next(line for line in table if "| executor |" in line)
    theirs = next(line for line in table if "| celery |" in line)
    assert "|  | 4 | 13.0 ms |" in mine and "| 8.0 ms |" in mine  # p50 of all; spread 20 - 12
    assert theirs.endswith("| 2.17x |")  # 13 / 6


def _cpu_line(executor_ms: float, floor_ms: float) -> str:
    figures = Figures()
    figures.add(CPU_TASK, "executor", executor_ms, "ms")
    figures.add(CPU_TASK, BARE_SANDBOX, floor_ms, "ms")
    return next(t for t in TARGETS if t.text.startswith(CPU_TASK)).line(figures)


def test_a_missed_target_is_out_of_reach_only_when_the_sandboxed_floor_misses_it() -> None:
    assert _cpu_line(15.5, 7.25).endswith(
        "| NOT MET, out of reach here: the protocol with the sandbox, done bare, costs 7.25 ms |")
    assert _cpu_line(15.5, 4.0).endswith("| NOT MET |")
    assert _cpu_line(4.5, 7.25).endswith("| met |")


def test_throughput_is_out_of_reach_when_the_bare_loops_are_slower_than_celery() -> None:
    figures = Figures()
    for side, rate in (("executor", 25.0), ("celery", 31.0), (BARE_SANDBOX, 28.0)):
        figures.add(TPUT.format(4), side, rate, "tasks/s")
    target = next(t for t in TARGETS if t.text.endswith("Celery's, 4 worker(s)"))
    assert target.line(figures).endswith("done bare in 4 loops, runs 28.0 tasks/s |")
    figures.add(TPUT.format(4), BARE_SANDBOX, [40.0, 40.0], "tasks/s")  # p50 of 28, 40, 40: 40
    assert target.line(figures).endswith("| NOT MET |")


@pytest.mark.slow
def test_quick_bench_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    sides = {measure: set(by_side) for measure, by_side in figures["samples"].items()}
    expected = {
        "SQS send -> receive": {"executor (gateway)", "gateway before the fix", "direct to moto"},
        "send -> first line (from the SQS send)": {"executor", "celery", "floor", BARE, BARE_SANDBOX},
        "send -> first line (from the GraphQL create call)": {"executor"},
        "trivial tasks/s, 1 worker(s)": {"executor", "celery"},
        "trivial tasks/s, 4 worker(s)": {"executor", "celery", BARE, BARE_SANDBOX},
        "executor CPU per task": {"executor", "celery", BARE, BARE_SANDBOX},
        "control plane CPU per task, 4 worker(s)": {"executor", "celery", BARE, BARE_SANDBOX},
        "CPU per task, every process, 1 worker(s)": {"executor", "celery"},
        CEILING.format(CORES, 4): {"executor", "celery", BARE_SANDBOX},
        "1-worker cycle: previous result -> next recipe's first line": {"executor", "celery"},
        "1-worker cycle: slot freed -> next recipe launched": {"executor"},
        "recipe exit -> result noticed": {"executor", "floor"},
        "CPU of the exec wrapper + CLI start-up": {"executor", "celery", "floor"},
        "CPU while 4 recipes sleep": {"executor", "celery"},
        "idle RSS, 1 pool(s)": {"executor", "celery"},
        "idle RSS, 4 pool(s)": {"executor"},
        "idle PSS, 1 pool(s)": {"executor", "celery"},
        "idle PSS, 4 pool(s)": {"executor"},
        "output throughput, 1024 B lines (masking on)": {"executor", *OUTPUT_FLOORS},
        "output throughput, 128 B lines (masking on)": {"executor", *OUTPUT_FLOORS},
        "executor RSS left after 1024 B-line output": {"executor"},
        "memory limit crossed -> process dead": {"psutil only", "psutil only, SIGTERM ignored"},
    }
    for measure, wanted in expected.items():
        assert wanted <= sides.get(measure, set()), f"{measure}: {sides.get(measure)}"
    assert "| target | measured (p50) | verdict |" in done.stdout
    assert done.stdout.count(" met |") + done.stdout.count("NOT MET |") >= 15
    assert "bench-secret" not in done.stdout + done.stderr
