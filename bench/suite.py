"""The bench run: every row, side by side, in interleaved repeats; then the table and the targets.

Run through ``python3 bench/run.py`` (which prepares the venvs). One repeat goes through every
measure in turn, each side right after the other (executor, Celery, floor; the pickup's and
the 4-worker throughput's sides in the reverse order every other repeat), so slow phases of
this shared machine hit all sides alike. ``--quick`` makes small floods and few samples, so a
test can run the whole command in about a minute; the table then says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from bench import cost_rows, floor_rows, idle_rows, memory_rows, rows
from bench.anchor import CeleryAnchor, Fauxqs, Floor, ProtocolFloor
from bench.machine import machine
from bench.real_cli import real_cli_row
from bench.spawn_rows import SpawnPairs
from bench.sqs_rows import SqsRows
from bench.stats import Figures, target_table
from bench.targets import TARGETS
from bench.world import ROOT, World
from executor.sandbox.spawner import IDLE_S

POOLS = ("default", "four", "sqsrow", "p1", "p2", "p3", "p4", "bare", "baresb", "bare4", "bare4p", "sleepfl")
GATEWAY_POOLS = ("sqsrow",)
"""The one pool whose SQS calls go through the control plane's lease-checking gateway: the
"SQS send -> receive" row keeps the gateway's cost in view. Every other pool (the executors' and
the floors') leases moto's own queue URL, as Celery's workers talk to moto and a real executor
to AWS SQS, whose credential checks cost the host nothing: the comparative rows are like for like."""
FLOOR_WORKERS = 4
SOLO, FOUR = "bench-solo", "bench-four"


@dataclass(frozen=True)
class Sizes:
    """How much each repeat does."""

    repeats: int
    sqs: int
    pickups: int
    batch: int
    window_s: float
    idle_s: float
    """The idle rows' window: a whole at-rest cycle in the full run (the long poll every 20 s,
    the presence report every 30 s: both repeat every 60 s), so no window catches more or fewer
    of them than another (session 18's 10 s windows read 0.04 to 0.13 %)."""
    flood: int
    real_cli: int
    rest_s: float
    """How long the idle rows wait for the executors to be at rest (no spare, spawn server gone):
    ``IDLE_S`` after the last task, and the margin (the spare and the server each count from
    about the last task's end; before session 18 the server waited a further ``IDLE_S`` when
    the spare's reap came after its idle time, and the session 17 run measured one pool's
    executor at ``IDLE_S + 10`` with its server still up: +12.6 MB and 2 threads)."""


FULL = Sizes(repeats=3, sqs=10, pickups=8, batch=20, window_s=3.0, idle_s=60.0, flood=256 << 20, real_cli=2,
             rest_s=IDLE_S + 10)
QUICK = Sizes(repeats=1, sqs=3, pickups=2, batch=4, window_s=1.0, idle_s=2.0, flood=16 << 20, real_cli=0,
              rest_s=0.0)


class Bench:
    """Everything one run starts; ``close()`` stops it all."""

    def __init__(self, tmp: Path, sizes: Sizes, only: set[str]) -> None:
        self.sizes, self.only, self.figures = sizes, only, Figures()
        self.figures.notes.append(
            "SQS paths: the executors, the floors and Celery all talk to moto directly (the executors' "
            "pools lease moto's own queue URL; moto keeps every connection alive, as SQS); only "
            "'SQS send -> receive' goes through the control plane's lease-checking gateway"
        )
        self.round = 0
        """The repeat under way (``in_turn`` reverses the sides' order on odd ones)."""
        self.world = World(tmp, POOLS, direct=[pool for pool in POOLS if pool not in GATEWAY_POOLS])
        standin = self.world.venv_root / "benchsim-bundled" / "bin" / "datahub"
        self.floor = Floor(self.world.cp.sqs_endpoint, self.world.stamps, standin)
        self.spawn_pairs = SpawnPairs(standin, self.world.stamps, tmp / "spawn-pairs")
        self.sqs = SqsRows(self.world)
        cp = self.world.cp
        # their leases point at moto itself (``direct``), as the executors' and Celery's workers'
        lease, sandboxed, shared, plain = cp.executor_configs(["bare", "baresb", "bare4", "bare4p"])
        self.bare = ProtocolFloor(cp.gms_url, cp.token, lease, standin, tmp / "bare")
        self.bare_sandbox = ProtocolFloor(cp.gms_url, cp.token, sandboxed, standin, tmp / "baresb",
                                          sandbox=True)
        # as many loops as the 4-worker rows' workers, one task each at a time, on one pool
        self.bare4 = [ProtocolFloor(cp.gms_url, cp.token, shared, standin, tmp / f"bare4-{i}", sandbox=True)
                      for i in range(FLOOR_WORKERS)]
        self.bare4p = [ProtocolFloor(cp.gms_url, cp.token, plain, standin, tmp / f"bare4p-{i}")
                       for i in range(FLOOR_WORKERS)]
        # the sleeping row's: one loop holding the four runs, with the protocol's periodic duties
        self.sleep_floor = ProtocolFloor(cp.gms_url, cp.token, cp.executor_configs(["sleepfl"])[0], standin,
                                         tmp / "sleepfl", command=("-m", "bench.sleep_floor"))
        # prefetch 1 as the Celery workers' (multiplier 1): the next request waits prepared
        self.one = self.world.executor([{"id": "default", "max_workers": 1, "prefetch": 1}])
        # prefetch 4 as the prefork worker's: with early acks (``task_acks_late`` off) Celery
        # reserves concurrency x multiplier (4) messages beyond the four it runs
        self.four = self.world.executor([{"id": "four", "max_workers": 4, "prefetch": 4}])
        self.pools4 = self.world.executor([{"id": pool} for pool in ("p1", "p2", "p3", "p4")])
        celery_python = os.environ.get("BENCH_CELERY_PYTHON", "")
        self.celery = CeleryAnchor(celery_python, self.world.cp.sqs_endpoint, self.world.stamps, standin, tmp)
        self.solo = self.celery.start_worker("solo", SOLO, ["--pool=solo"])
        self.prefork = self.celery.start_worker("four", FOUR, ["--concurrency=4"])
        self.fauxqs: Fauxqs | None = None
        self.celery_fq: CeleryAnchor | None = None
        if os.environ.get("BENCH_FAUXQS"):
            self.fauxqs = Fauxqs(Path(os.environ["BENCH_FAUXQS"]))
            self.celery_fq = CeleryAnchor(
                celery_python, self.fauxqs.endpoint, self.world.stamps, standin, tmp
            )
            self.fq_workers = {
                1: self.celery_fq.start_worker("fq-solo", SOLO, ["--pool=solo"]),
                4: self.celery_fq.start_worker("fq-four", FOUR, ["--concurrency=4"]),
            }

    def wanted(self, group: str) -> bool:
        return not self.only or group in self.only

    def warm_up(self) -> None:
        """One task on every runner, so start-up costs stay out of the figures."""
        for pool in ("default", "four", "bare", "baresb", "sleepfl"):
            self.world.wait_result(self.world.submit(self.world.source(pool, {"mode": "trivial"}))[0])
        for pool in ("bare4", "bare4p"):
            shared = self.world.source(pool, {"mode": "trivial"})
            for urn in [self.world.submit(shared)[0] for _ in range(2 * FLOOR_WORKERS)]:
                self.world.wait_result(urn)
        rows.celery_pickups(self.celery, SOLO, Figures(), 1)
        rows.celery_pickups(self.celery, FOUR, Figures(), 1)
        rows.floor_pickups(self.floor, Figures(), 1)
        if self.celery_fq is not None:
            rows.celery_pickups(self.celery_fq, SOLO, Figures(), 1)
            rows.celery_pickups(self.celery_fq, FOUR, Figures(), 1)
        self.world.wait_result(self.world.submit(self.world.source("p1", {"mode": "trivial"}))[0])

    def in_turn(self, sides: list[Callable[[], None]]) -> None:
        """Run one measure's sides one after the other, in the reverse order every other repeat:
        a slow phase of this shared machine then does not always fall on the same side."""
        for side in sides if self.round % 2 == 0 else sides[::-1]:
            side()

    def repeat(self) -> None:
        f, s, w = self.figures, self.sizes, self.world
        if self.wanted("idle"):
            procs = {("executor", 1): self.one.ps, ("executor", 4): self.pools4.ps, ("celery", 1): self.solo,
                     (floor_rows.BARE, 1): self.bare.ps}
            idle_rows.at_rest(procs, s.rest_s)
            idle_rows.idle(procs, f, s.idle_s)
        if self.wanted("sqs"):
            for side in self.sqs.clients:
                server = "moto" if side == "direct to moto" else "moto via gateway"
                f.add("SQS send -> receive", side, self.sqs.round_trips(side, s.sqs), "ms", server)
        if self.wanted("pickup"):
            self.in_turn([
                lambda: rows.executor_pickups(w, self.one, "default", f, s.pickups),
                lambda: rows.celery_pickups(self.celery, SOLO, f, s.pickups),
                lambda: rows.floor_pickups(self.floor, f, s.pickups),
                lambda: floor_rows.protocol_floor_pickups(w, "bare", f, s.pickups),
                lambda: floor_rows.protocol_floor_pickups(w, "baresb", f, s.pickups, floor_rows.BARE_SANDBOX),
            ])
            self.spawn_pairs.add(f, 2 * s.pickups)
        if self.wanted("throughput"):
            self.throughput()
        if self.wanted("sleeping"):
            self.in_turn([
                lambda: rows.executor_sleeping(w, self.four, "four", f, s.window_s),
                lambda: rows.celery_sleeping(self.celery, self.prefork, FOUR, f, s.window_s),
                lambda: rows.runner_sleeping(w, self.sleep_floor.ps, floor_rows.BARE_SANDBOX, "sleepfl", f,
                                             s.window_s),
            ])
        if self.wanted("output"):
            self.output()
        if self.wanted("memory"):
            memory_rows.memory_rows(f)

    def output(self) -> None:
        """The output rows, every flood from the same state: one untimed executor flood first
        (the floor's drain process throws its first flood away too; and its log, deleted, leaves
        the next flood the pages a deleted log frees, as every later flood finds them), then the
        line sizes and the sides in the reverse order every other repeat."""
        f, s, w = self.figures, self.sizes, self.world
        rows.warm_output(w, self.one, "default", s.flood)
        for line in (1024, 128) if self.round % 2 == 0 else (128, 1024):
            self.in_turn([
                lambda line=line: rows.executor_output(w, self.one, "default", line, s.flood, f),
                lambda line=line: rows.floor_output(self.floor, line, s.flood, f),
            ])

    def throughput(self) -> None:
        """The throughput rows and their CPU rows: executor, the bare protocol's floors, Celery."""
        f, s, w = self.figures, self.sizes, self.world
        mine = [self.floor.thread]  # the bench's threads besides this one: not the control plane
        rest = cost_rows.server_rest_rate(mine, s.window_s)
        rows.executor_throughput(w, self.one, "default", 1, f, s.batch, mine, rest)
        floor_rows.protocol_floor_cpu(w, self.bare, "bare", f, s.batch)
        floor_rows.protocol_floor_cpu(w, self.bare_sandbox, "baresb", f, s.batch, floor_rows.BARE_SANDBOX)
        rows.celery_throughput(self.celery, self.solo, SOLO, 1, f, s.batch, bench_threads=mine,
                               server_at_rest=rest)
        self.in_turn([
            lambda: rows.executor_throughput(w, self.four, "four", 4, f, s.batch, mine, rest),
            lambda: floor_rows.protocol_floor_throughput(w, self.bare4, "bare4", f, s.batch, mine, rest,
                                                         floor_rows.BARE_SANDBOX),
            lambda: floor_rows.protocol_floor_throughput(w, self.bare4p, "bare4p", f, s.batch, mine, rest,
                                                         floor_rows.BARE),
            lambda: rows.celery_throughput(self.celery, self.prefork, FOUR, 4, f, s.batch, bench_threads=mine,
                                           server_at_rest=rest),
        ])
        if self.celery_fq is not None:
            for workers, queue in ((1, SOLO), (4, FOUR)):
                rows.celery_throughput(
                    self.celery_fq,
                    self.fq_workers[workers],
                    queue,
                    workers,
                    f,
                    s.batch,
                    side="celery on fauxqs",
                )

    def close(self) -> None:
        self.celery.close()
        if self.celery_fq is not None:
            self.celery_fq.close()
        if self.fauxqs is not None:
            self.fauxqs.close()
        self.sqs.close()
        self.floor.close()
        for floor in [self.bare, self.bare_sandbox, *self.bare4, *self.bare4p, self.sleep_floor]:
            floor.close()
        self.world.close()


def report(figures: Figures, info: dict[str, str], sizes: Sizes, quick: bool, took: float) -> str:
    lines = [
        f"# bench ({'quick' if quick else 'full'}: {sizes.repeats} interleaved repeat(s), {took:.0f} s)",
        "",
        "machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        *figures.table(),
        "",
        *target_table(TARGETS, figures),
    ]
    if figures.notes:
        lines += ["", *(f"note: {note}" for note in figures.notes)]
    return "\n".join(lines)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples and small floods (a smoke run)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (3 by default, 1 with --quick)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated groups: idle,sqs,pickup,throughput,sleeping,output,memory,real_cli",
    )
    parser.add_argument(
        "--flood-mib",
        type=int,
        help="output per flood, MiB (256 by default, 16 with --quick; the issue's 1024)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / ".cache" / "bench-latest.json",
        help="where the figures go as JSON",
    )
    return parser.parse_args()


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    if args.flood_mib:
        sizes = Sizes(**{**sizes.__dict__, "flood": args.flood_mib << 20})
    return sizes


def main() -> int:
    args = _arguments()
    logger.remove()  # the control plane's request log would drown the table
    logger.add(sys.stderr, level="WARNING")
    sizes = _sizes(args)
    only = {g for g in args.only.split(",") if g}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        info = machine(Path(tmp))
        bench = Bench(Path(tmp), sizes, only)
        try:
            bench.warm_up()
            for index in range(sizes.repeats):
                print(f"repeat {index + 1}/{sizes.repeats}", file=sys.stderr, flush=True)
                bench.round = index
                bench.repeat()
            if bench.wanted("real_cli"):
                real_cli_row(bench.world, bench.figures, sizes.real_cli)
        finally:
            bench.close()
    print(report(bench.figures, info, sizes, args.quick, time.monotonic() - began))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    figures = bench.figures
    args.json.write_text(json.dumps({"machine": info, "quick": args.quick, "samples": figures.samples,
                                     "units": figures.units, "notes": figures.notes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
