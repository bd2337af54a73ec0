"""What caps the throughput rows: the CPU every process spends per task, and the 1-worker cycle.

On a machine with few cores the rate of trivial tasks can be capped by CPU, not by waiting: the
executor (or the Celery worker), the recipes, and the servers they talk to all share the cores.
The control plane runs in the bench's own process (its GMS API, the SQS gateway and moto), so
its CPU is this process's CPU outside the bench's own threads (the main thread, which runs the
rows and waits on results, and the floor's poller). For the executor (and the bare protocol's
floors) it holds every GMS call the protocol needs (the input aspect, the secret, RUNNING, the
result), the GraphQL create with its ``SendMessage`` and moto's share of the SQS calls (made to
moto directly, as Celery's: the suite's pools lease moto's queue URL, not the gateway's); the
bench thread's CPU in those create calls is its producer's, in ``helpers``. For Celery: moto's
share and, in ``helpers``, the producer process that sends the tasks. What the control plane
spends at rest (the idle long polls of every executor and worker the bench started, measured
before each repeat's batches) is taken out. Recipes are counted when reaped (the executor's own
children, the Celery worker's or its pool processes'). ``cores / CPU per task`` is the most
tasks/s the machine allows whatever the waits: a side whose ceiling is below another side's
measured rate cannot reach it here.

The 1-worker cycle splits the time between two trivial tasks, from the executor's log (its
``finished`` and ``starting`` lines, ms) and the stand-in's stamps: slot freed -> next recipe
launched (admission, the RUNNING report and the secret fetch; without ``prefetch`` also the
receive and the input read), launched -> the recipe's first line (venv, work dir, cgroup, the
spawn and the CLI's own start-up). Celery's cycle is one task's end to the next one's first line.
"""

from __future__ import annotations

import datetime
import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import psutil

from bench.stats import Figures, Target
from bench.world import ExecutorChild, World, own_cpu, read_stamp, task_cpu
from executor.pool.warm import ADOPTED, KILLED_UNUSED

CORES = os.cpu_count() or 1
CP_CPU = "control plane CPU per task, {} worker(s)"
RECIPE_CPU = "recipe CPU per task, {} worker(s)"
ALL_CPU = "CPU per task, every process, {} worker(s)"
CEILING = "tasks/s the {} cores allow at that CPU, {} worker(s)"
CYCLE = "1-worker cycle: previous result -> next recipe's first line"
CYCLE_PREP = "1-worker cycle: slot freed -> next recipe launched"
CYCLE_SPAWN = "1-worker cycle: recipe launched -> its first line"
SPARES = "warm spares {} per batch, {} worker(s)"
"""Made, adopted, discarded: a spare killed unused is reaped, its start-up's CPU in "recipes"
(waste, not a task's); these rows show how much of that row it is."""


@dataclass(frozen=True)
class SpareTally:
    """The executor's warm spares so far: adopted and killed unused (its log), live (children)."""

    adopted: int
    discarded: int
    live: int


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds of one side's processes at one moment."""

    runner: float
    """The executor process, or the Celery worker and its pool processes."""
    recipes: float
    """Children reaped so far: the stand-in recipes (and, for the executor, a replaced server)."""
    helpers: float
    """The spawn server; for Celery, the producer process that sends its tasks (the executor's
    and the floors' producer, the bench's own GraphQL create calls, is added by ``add_cost_rows``)."""
    server: float
    """The control plane's threads in this process (GMS API, gateway, moto)."""
    at: float
    """When it was taken (monotonic seconds)."""
    spares: SpareTally | None = None
    """The executor's warm spares (None: another side, which has none)."""


def _reaped(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.children_user + times.children_system)


def _is_spawn_server(proc: psutil.Process) -> bool:
    """The executor's spawn server (``launch.py --serve``), not a recipe."""
    return "--serve" in proc.cmdline()


def _thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds of one of this process's threads (0 once it has ended)."""
    if thread is None or thread.native_id is None:
        return 0.0
    return task_cpu("self", thread.native_id)


def server_cpu(bench_threads: Sequence[threading.Thread | None]) -> float:
    """This process's CPU outside the caller's thread and ``bench_threads``: the control plane.

    Call it from the thread that runs the rows (its own CPU is taken out with ``thread_time``)."""
    return time.process_time() - time.thread_time() - sum(_thread_cpu(t) for t in bench_threads)


def runners_snapshot(runners: Sequence[psutil.Process],
                     bench_threads: Sequence[threading.Thread | None]) -> CpuSnapshot:
    """The executor's or the bare protocol's loops: one reader for every such side (each
    runner's process user + system, exited threads counted; its reaped children; its live
    children: the spawn server as a helper, any other as a recipe so far). A live recipe at a
    snapshot is a warm spare (a task's is reaped before the "after"): its start-up is a
    recipe's CPU, as a spawned run's is, and a spare the batch leaves behind is adopted by the
    next one (counted with the executor's own, it added 2 ms a task to a 20-task batch)."""
    runner = recipes = helpers = 0.0
    for ps in runners:
        runner, recipes = runner + own_cpu(ps), recipes + _reaped(ps)
        for member in ps.children():
            try:
                if _is_spawn_server(member):
                    helpers += own_cpu(member)
                else:
                    recipes += own_cpu(member)
            except psutil.Error:
                continue
    return CpuSnapshot(runner, recipes, helpers, server_cpu(bench_threads), time.monotonic())


def per_task_ms(seconds: float, count: int) -> float:
    """CPU seconds as ms per task, rounded to the nanosecond: a difference of two sums carries
    float noise (ten 10 ms clock ticks over 20 tasks, as the bench read them before it read the
    process CPU clock, gave 4.999999999999999 ms, which passed a "< 5 ms" target at 5.0)."""
    return round(seconds / count * 1000, 6)


def own_side_ms(before: CpuSnapshot, after: CpuSnapshot, count: int) -> float:
    """The runner's own ms of CPU per task: its process and its helper (the spawn server that
    forks the recipes for it, as a Celery worker's ``Popen`` forks them in its own process)."""
    return per_task_ms(after.runner + after.helpers - before.runner - before.helpers, count)


def executor_snapshot(child: ExecutorChild, bench_threads: Sequence[threading.Thread | None]) -> CpuSnapshot:
    snapshot = runners_snapshot([child.ps], bench_threads)
    live = sum(1 for member in _children(child.ps) if not _is_spawn_server(member))
    return replace(snapshot, spares=spare_tally(child.log_path, live))


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [m for m in proc.children() if m.is_running()]
    except psutil.Error:
        return []


def spare_tally(log_path: Path, live: int) -> SpareTally:
    """The warm spares the executor's log says were adopted and killed unused, and ``live``."""
    adopted = discarded = 0
    with open(log_path, errors="replace") as log:
        for line in log:
            adopted += ADOPTED in line
            discarded += KILLED_UNUSED in line
    return SpareTally(adopted, discarded, live)


def celery_snapshot(
    worker: psutil.Process, producer: int, bench_threads: Sequence[threading.Thread | None]
) -> CpuSnapshot:
    runner = recipes = 0.0
    for member in [worker, *worker.children()]:
        try:
            runner += own_cpu(member) if member.pid == worker.pid or _is_pool(member) else 0.0
            recipes += _reaped(member)
        except psutil.Error:
            continue
    try:
        helpers = own_cpu(psutil.Process(producer))
    except psutil.Error:
        helpers = 0.0
    return CpuSnapshot(runner, recipes, helpers, server_cpu(bench_threads), time.monotonic())


def _is_pool(member: psutil.Process) -> bool:
    """A prefork pool process (a Python running Celery), not a recipe still running."""
    try:
        return "celery" in " ".join(member.cmdline())
    except psutil.Error:
        return False


def server_rest_rate(bench_threads: Sequence[threading.Thread | None], window_s: float) -> float:
    """The control plane's CPU seconds per second with no task anywhere: the idle long polls of
    every executor, Celery worker and the floor. Taken out of the per-task figures."""
    before, began = server_cpu(bench_threads), time.monotonic()
    time.sleep(window_s)
    return (server_cpu(bench_threads) - before) / (time.monotonic() - began)


def add_cost_rows(
    figures: Figures,
    side: str,
    workers: int,
    before: CpuSnapshot,
    after: CpuSnapshot,
    count: int,
    server_at_rest: float,
    producer_s: float = 0.0,
) -> None:
    """Per-task CPU of the side's parts over one throughput batch, and the ceiling it implies
    (``server_at_rest``: the control plane's CPU per second without tasks, not theirs;
    ``producer_s``: CPU seconds the bench's own thread spent creating the batch's requests, the
    executor's producer, counted as Celery's producer process is)."""
    per = {f.name: per_task_ms(getattr(after, f.name) - getattr(before, f.name), count)
           for f in fields(CpuSnapshot) if f.name not in ("at", "spares")}
    per["helpers"] += per_task_ms(producer_s, count)
    per["server"] = max(0.0, per["server"] - per_task_ms(server_at_rest * (after.at - before.at), count))
    total = sum(per.values())
    figures.add(CP_CPU.format(workers), side, per["server"], "ms")
    figures.add(RECIPE_CPU.format(workers), side, per["recipes"], "ms")
    figures.add(ALL_CPU.format(workers), side, total, "ms")
    if total > 0:
        figures.add(CEILING.format(CORES, workers), side, CORES / total * 1000, "tasks/s")
    if before.spares is not None and after.spares is not None:
        adopted = after.spares.adopted - before.spares.adopted
        discarded = after.spares.discarded - before.spares.discarded
        made = adopted + discarded + after.spares.live - before.spares.live
        for what, count_of in (("made", made), ("adopted", adopted), ("discarded", discarded)):
            figures.add(SPARES.format(what, workers), side, float(count_of), "spares")


def _log_times(child: ExecutorChild, marker: str) -> dict[str, float]:
    """Request id -> when the executor logged ``marker`` for it (its log's ms timestamps)."""
    found: dict[str, float] = {}
    with open(child.log_path, errors="replace") as log:
        for line in log:
            if marker not in line or "/task:" not in line:
                continue
            key = line.split("/task:", 1)[1].split(":", 1)[0]
            found[key] = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return found


def executor_cycle(world: World, child: ExecutorChild, urns: list[str], figures: Figures) -> None:
    """The gaps between consecutive tasks of a 1-worker batch (in the order they started)."""
    keys = [urn.rsplit(":", 1)[-1] for urn in urns]
    starting, finished = _log_times(child, ": starting "), _log_times(child, ": finished: ")
    first = {k: stamp["t"] for k in keys if (stamp := read_stamp(world.stamps, f"{k}.start")) is not None}
    known = [k for k in keys if k in starting and k in finished and k in first]
    ordered = sorted(known, key=starting.__getitem__)
    cycle, prep, spawn = [], [], []
    for previous, key in itertools.pairwise(ordered):
        cycle.append((first[key] - finished[previous]) * 1000)
        prep.append((starting[key] - finished[previous]) * 1000)
        spawn.append((first[key] - starting[key]) * 1000)
    figures.add(CYCLE, "executor", cycle, "ms")
    figures.add(CYCLE_PREP, "executor", prep, "ms")
    figures.add(CYCLE_SPAWN, "executor", spawn, "ms")


def celery_cycle(stamps: Path, tags: list[str], figures: Figures) -> None:
    """The same gap for Celery: one task's ``done`` stamp to the next one's first line."""
    done = {t: read_stamp(stamps, f"{t}.done") for t in tags}
    start = {t: read_stamp(stamps, f"{t}.start") for t in tags}
    times = sorted((s["t"], d["t"]) for t in tags if (s := start[t]) and (d := done[t]))
    gaps = [(later - done_at) * 1000 for (_, done_at), (later, _) in itertools.pairwise(times)]
    figures.add(CYCLE, "celery", [g for g in gaps if g > 0], "ms")


def ceiling_target(workers: int) -> Target:
    """Whether the executor's CPU per task lets these cores reach Celery's measured rate at all."""

    def check(f: Figures) -> tuple[bool | None, str]:
        cpu = f.p50(ALL_CPU.format(workers))
        celery = f.p50(f"trivial tasks/s, {workers} worker(s)", "celery")
        if cpu is None or celery is None:
            return None, "-"
        needed = cpu / 1000 * celery
        return needed <= CORES, (
            f"{cpu:.0f} ms of CPU per task x Celery's {celery:.1f} tasks/s = {needed:.2f} cores of {CORES}"
        )

    return Target(f"the executor's CPU per task allows Celery's {workers}-worker rate on this machine", check)

