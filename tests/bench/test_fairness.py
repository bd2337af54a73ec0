"""The comparative rows charge each side alike: the SQS path, the batch's window, the producer,
and the moment a pickup is timed from (docs/performance.md, "How each figure is taken").

Real parts: the local control plane (moto on loopback), boto3 over HTTP, the bench's world.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import boto3
import psutil
import pytest

from bench import rows
from bench.anchor import Floor
from bench.cost_rows import ALL_CPU, SPARES, CpuSnapshot, add_cost_rows, runners_snapshot, spare_tally
from bench.rows import batch_seconds
from bench.stats import Figures
from bench.suite import QUICK, Bench
from bench.wire_stamps import stamp_sends
from bench.world import RESULT, World, read_stamp
from executor.local.controlplane.aws import REGION
from executor.pool.warm import ADOPTED, KILLED_UNUSED


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path, ("direct", "gated"), direct=["direct"])
    yield made
    made.close()


def test_only_the_gated_pool_goes_through_the_gateway(world: World) -> None:
    configs = {c["executorId"]: c for c in world.cp.executor_configs()}
    assert configs["direct"]["queueUrl"] == world.cp.queue_url("direct")
    assert configs["gated"]["queueUrl"] == world.cp.gateway_queue_url("gated")
    assert (world.sqs_server("direct"), world.sqs_server("gated")) == ("moto", "moto via gateway")


def test_a_batch_runs_from_its_first_send_to_its_last_result_stored(world: World) -> None:
    source = world.source("direct", {"mode": "trivial"})
    urns = [world.submit(source)[0] for _ in range(2)]
    for urn in urns:
        world.cp.aspects.put(urn, RESULT, {"status": "SUCCESS", "startTimeMs": 0, "durationMs": 1})
    stored = max(s.created_ms for urn in urns for s in world.cp.aspects.history(urn, RESULT)) / 1000
    assert batch_seconds(world, urns) == pytest.approx(stored - world.sent[urns[0]])


def test_the_producers_cpu_is_in_every_process_sum() -> None:
    zero = CpuSnapshot(runner=0.0, recipes=0.0, helpers=0.0, server=0.0, at=0.0)
    after = CpuSnapshot(runner=0.02, recipes=0.0, helpers=0.0, server=0.0, at=1.0)
    figures = Figures()
    add_cost_rows(figures, "executor", 1, zero, after, 2, 0.0, producer_s=0.01)
    assert figures.p50(ALL_CPU.format(1)) == pytest.approx(15.0)  # (20 + 10) ms over 2 tasks


def test_a_live_child_is_a_recipe_but_the_spawn_server_a_helper() -> None:
    """A warm spare alive at a snapshot is a recipe's CPU (its start-up), not the executor's own;
    only the spawn server (``--serve``) is the executor's helper."""
    burn = "import sys, time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\n" \
           "print('burnt', flush=True)\nsys.stdin.read()"
    children = [subprocess.Popen([sys.executable, "-c", burn, *extra], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE) for extra in ((), ("--serve",))]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == b"burnt\n"
        spare, server = (psutil.Process(child.pid) for child in children)
        snapshot = runners_snapshot([psutil.Process()], ())
        assert snapshot.helpers == pytest.approx(sum(server.cpu_times()[:2]), abs=0.02)
        assert snapshot.recipes >= sum(spare.cpu_times()[:2]) >= 0.15
    finally:
        for child in children:
            child.communicate(b"")


def test_a_send_is_stamped_as_it_leaves_and_nothing_else_is(world: World) -> None:
    sqs = boto3.session.Session().client(
        "sqs", endpoint_url=world.cp.sqs_endpoint, region_name=REGION,
        aws_access_key_id="bench", aws_secret_access_key="bench",
    )
    url = world.cp.queue_url("direct")
    stamps: list[float] = []
    undo = stamp_sends(stamps)
    try:
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
        assert stamps == []
        before = time.time()
        sqs.send_message(QueueUrl=url, MessageBody="stamped")
        assert len(stamps) == 1 and before <= stamps[0] <= time.time()
    finally:
        undo()
        sqs.close()
    sqs = boto3.session.Session().client(
        "sqs", endpoint_url=world.cp.sqs_endpoint, region_name=REGION,
        aws_access_key_id="bench", aws_secret_access_key="bench",
    )
    try:
        sqs.send_message(QueueUrl=url, MessageBody="not stamped once undone")
    finally:
        sqs.close()
    assert len(stamps) == 1


def test_the_floors_pickup_runs_from_when_its_message_left(world: World) -> None:
    standin = world.venv_root / "benchsim-bundled" / "bin" / "datahub"
    floor = Floor(world.cp.sqs_endpoint, world.stamps, standin)
    try:
        took = floor.pickup("fair-1")
        left = floor._on_the_wire[-1]
        start = read_stamp(world.stamps, "fair-1.start")
        assert start is not None and took == pytest.approx((start["t"] - left) * 1000)
    finally:
        floor.close()


def test_the_output_rows_start_warm_and_swap_line_sizes_and_sides_every_other_repeat(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every repeat's output group begins with an untimed executor flood (its first flood runs
    cold, and the first timed one then finds the pages a deleted log freed, as all later ones
    do); odd repeats run 128 B lines first, and the floor before the executor."""
    done: list[str] = []
    monkeypatch.setattr(rows, "warm_output", lambda *_args: done.append("warm"))
    monkeypatch.setattr(rows, "executor_output",
                        lambda _w, _c, _p, line, *_a: done.append(f"executor {line}"))
    monkeypatch.setattr(rows, "floor_output", lambda _f, line, *_a: done.append(f"floor {line}"))
    bench = Bench.__new__(Bench)  # the order alone: no world, no executors
    bench.figures, bench.sizes, bench.world, bench.one, bench.floor = Figures(), QUICK, None, None, None
    for bench.round in (0, 1):
        bench.output()
    assert done == ["warm", "executor 1024", "floor 1024", "executor 128", "floor 128",
                    "warm", "floor 128", "executor 128", "floor 1024", "executor 1024"]


def test_the_executors_spares_made_adopted_and_discarded_are_rows(tmp_path: Path) -> None:
    """A spare killed unused is a reaped child: its start-up lands in the recipe row as waste.
    The batch's spares made, adopted and discarded are rows of their own (from the executor's
    log and its live children), so the table shows that waste."""
    log = tmp_path / "executor.log"
    log.write_text(f"x task-1 {ADOPTED} (pid 1)\n")
    before = replace(CpuSnapshot(0.0, 0.0, 0.0, 0.0, 0.0), spares=spare_tally(log, live=1))
    with open(log, "a") as more:
        more.write(f"x task-2 {ADOPTED} (pid 2)\nx {KILLED_UNUSED}: no task came in time\n"
                   f"x task-3 {ADOPTED} (pid 3)\n")
    after = replace(CpuSnapshot(0.01, 0.0, 0.0, 0.0, 1.0), spares=spare_tally(log, live=1))
    figures = Figures()
    add_cost_rows(figures, "executor", 1, before, after, 2, 0.0)
    assert [figures.p50(SPARES.format(what, 1)) for what in ("made", "adopted", "discarded")] == [3, 2, 1]
    add_cost_rows(figures, "celery", 1, CpuSnapshot(0.0, 0.0, 0.0, 0.0, 0.0),
                  CpuSnapshot(0.01, 0.0, 0.0, 0.0, 1.0), 2, 0.0)
    assert figures.p50(SPARES.format("made", 1), "celery") is None, "no spares on other sides"
