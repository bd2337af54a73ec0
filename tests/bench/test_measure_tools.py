"""The measuring tools performance.md cites run as written and print every side they name.

The figures themselves are the bench's business (printed tables, never asserted); these check
that each tool still runs end to end on real processes and reports what it says it does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.splitlines()


def test_spawn_cpu_pairs_each_variant_with_its_bare_baseline() -> None:
    lines = _run("bench.spawn_cpu", "2", "popen,server-all,tiny-popen,tiny-server-all")
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == {"popen", "server-all", "tiny-popen", "tiny-server-all"}
    assert "+0.00 [+0.00, +0.00]" in rows["popen"]  # a baseline paired with itself
    assert rows["tiny-popen"].split()[1] == "-"  # /bin/true prints no first line
    assert lines[-1].startswith("ms of the program's own CPU, 2 interleaved rounds")


def test_output_cpu_times_the_executor_reader_against_both_floors() -> None:
    lines = _run("bench.output_cpu", "1024", "4", "1")
    assert lines[0].startswith("1024 B lines, 4 MiB, 1 repeat(s), logs kept")
    sides = [line.split("  ")[1].strip() for line in lines[1:] if "MB/s" in line]
    assert sides == ["executor", "floor (a pipe into a file)", "floor (a pipe)"]
    assert all("ms CPU/MiB" in line for line in lines[1:])
    threads = lines[2].split()  # the executor's two threads, by name, each with a figure (a 4 MiB
    assert "reader" in threads and float(threads[threads.index("log's") + 1]) >= 0  # flood may end unsampled)


def test_cp_calls_splits_the_control_planes_cpu_by_request_kind() -> None:
    lines = _run("bench.cp_calls", "1")
    assert lines[0].startswith("executor, 4 workers: control plane ")
    kinds = {line[2:74].strip(): line[74:].split() for line in lines[2:]}
    for kind in ("moto AmazonSQS.ReceiveMessage", "moto AmazonSQS.SendMessage",
                 "gms POST /aspects?action=ingestProposal", "gms graphql query getSecretValues",
                 "gms POST /openapi/v2/entity/batch/dataHubExecutionRequest"):
        assert kind in kinds, lines
    assert float(kinds["moto AmazonSQS.SendMessage"][0]) == 1.0  # one dispatch per task
    # each task's result, and the RUNNING of those not ended before it went out
    assert 1.0 <= float(kinds["gms POST /aspects?action=ingestProposal"][0]) <= 3.0


@pytest.mark.parametrize("sleeping", ["0", "2"])
def test_idle_wakes_reads_an_executor_at_rest_beside_a_bare_thread(sleeping: str) -> None:
    lines = _run("bench.idle_wakes", "1", "1", "2", sleeping)
    assert lines[0] == f"one executor with 2 pool(s) and {sleeping} sleeping recipe(s), 1 window(s) of 1 s"
    assert lines[1] == "window 1:"
    total = next(line for line in lines if line.startswith("  total "))
    assert "% of a core" in total and "wake-ups/s" in total
    bare = lines[-1]
    assert bare.startswith("  a bare thread waking every 0.5 s: ") and bare.endswith(" us per wake-up")


def test_the_machine_line_prices_a_new_file_and_a_wake_up_and_leaves_nothing(tmp_path: Path) -> None:
    info = machine(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe's files and their directory are gone
    for key in ("a new file in the bench's directory", "a thread's wake-up after 1 s asleep"):
        figure, unit = info[key].split(" ", 1)
        assert unit == "us of CPU" and float(figure) > 0, (key, info[key])
