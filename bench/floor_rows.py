"""The bare protocol's rows: what a runner of this protocol costs with no framework, with and
without the sandbox the mission requires (``bench.protocol_floor``, ``bench.sandbox_floor``).

They sit beside the executor's pickup, CPU per task and 4-worker throughput rows, so a target
the executor misses can be read against what the protocol (and its sandbox) allows here at all.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from bench import cost_rows
from bench.anchor import ProtocolFloor
from bench.rows import CPU_TASK, PICKUP_SQS, TPUT, batch_seconds, submit_batch
from bench.stats import Figures
from bench.world import World, wait_for

BARE = "floor (the protocol, bare)"
BARE_SANDBOX = "floor (the protocol + the sandbox, bare)"


def protocol_floor_cpu(world: World, floor: ProtocolFloor, pool: str, figures: Figures, count: int,
                       side: str = BARE) -> None:
    """A floor's own CPU per task, ``count`` trivial runs at once (one loop takes them in turn)."""
    source = world.source(pool, {"mode": "trivial"})
    before = cost_rows.runners_snapshot([floor.ps], ())
    for urn in [world.submit(source)[0] for _ in range(count)]:
        world.wait_result(urn)
    after = cost_rows.runners_snapshot([floor.ps], ())
    figures.add(CPU_TASK, side, cost_rows.own_side_ms(before, after, count), "ms")


def protocol_floor_pickups(world: World, pool: str, figures: Figures, count: int, side: str = BARE) -> None:
    """A floor's pickups: from the SQS send to the first line, one run after the other."""
    source, samples = world.source(pool, {"mode": "trivial"}), []
    for _ in range(count):
        urn, _created = world.submit(source)
        stamp = wait_for(lambda u=urn: world.started(u), 60, f"{urn} to start")
        samples.append((stamp["t"] - world.sent[urn]) * 1000)
        world.wait_result(urn)
    figures.add(PICKUP_SQS, side, samples, "ms", world.sqs_server(pool))


def protocol_floor_throughput(
    world: World,
    floors: Sequence[ProtocolFloor],
    pool: str,
    figures: Figures,
    count: int,
    bench_threads: Sequence[threading.Thread | None],
    server_at_rest: float,
    side: str = BARE_SANDBOX,
) -> None:
    """``count`` trivial runs at once on a pool that ``floors`` (one loop each, one task at a time:
    Celery's prefetch of one) serve together: tasks/s until the last result is delivered, and the
    CPU rows of every process (``cost_rows``), as the executor's with as many workers."""
    source = world.source(pool, {"mode": "trivial"})
    before = cost_rows.runners_snapshot([floor.ps for floor in floors], bench_threads)
    urns, produced = submit_batch(world, source, count)
    for urn in urns:
        world.wait_result(urn)
    after = cost_rows.runners_snapshot([floor.ps for floor in floors], bench_threads)
    workers = len(floors)
    rate = count / batch_seconds(world, urns)
    figures.add(TPUT.format(workers), side, rate, "tasks/s", world.sqs_server(pool))
    cost_rows.add_cost_rows(figures, side, workers, before, after, count, server_at_rest, produced)
