"""The executor-against-Celery rows: pickup, throughput, CPU per task, CPU while recipes sleep,
idle cost, and output throughput. Each function runs one repeat of one side and adds its samples.

Everything about the executor is measured from outside its process: psutil on its pid (CPU,
RSS, threads) and the stand-in's own timestamps (first line, flood start and end).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from bench import cost_rows
from bench.anchor import CeleryAnchor, Floor
from bench.stats import Figures
from bench.world import ExecutorChild, World, own_cpu, read_stamp, threads_woken, wait_for
from executor.pool.runner import TRIM_AFTER_S

PICKUP_SQS = "send -> first line (from the SQS send)"
PICKUP_GQL = "send -> first line (from the GraphQL create call)"
TPUT = "trivial tasks/s, {} worker(s)"
CPU_TASK = "executor CPU per task"
"""The runner's own CPU: the executor's process and its spawn server (which forks the recipes for
it), the Celery worker and its pool processes (whose ``Popen`` forks them), a floor's process and
its spawn server if it has one; never the recipe's own."""
WRAPPER = "CPU of the exec wrapper + CLI start-up"
"""The stand-in's CPU at its first line during a live pickup (the set-up between fork and exec,
the exec, the CLI's start-up, with the executor and the control plane busy beside it), against
a bare ``Popen`` in the floor's quiet loop; ``bench.spawn_rows`` takes the same paired and quiet."""
EXIT_NOTICED = "recipe exit -> result noticed"
CPU_SLEEP = "CPU while 4 recipes sleep"
SLEEP_WAKES = "wake-ups while 4 recipes sleep"
"""Times a thread of the side was scheduled in, per second, in the same window: what that CPU
is made of (as ``IDLE_WAKES``); Celery's are its worker's and its pool processes'."""
IDLE_RSS = "idle RSS, {} pool(s)"
IDLE_PSS = "idle PSS, {} pool(s)"
IDLE_THREADS = "idle threads, {} pool(s)"
IDLE_CPU = "idle CPU, {} pool(s)"
IDLE_WAKES = "idle wake-ups, {} pool(s)"
"""Times a thread of the side was scheduled in, per second at rest: what the idle CPU is made of
on a machine that charges 0.2-5 ms for each wake-up after a long sleep (``bench.idle_wakes``)."""
OUTPUT = "output throughput, {} B lines (masking on)"
KEPT_LOG_FLOOR = "floor (a pipe into a file)"
"""The least any runner that keeps the whole log does with a flood: read the pipe, write a file."""
OUTPUT_RSS = "executor RSS growth during {} B-line output"
OUTPUT_RSS_READ = "executor RSS growth while the {} B-line flood is read"
OUTPUT_LEFT = "executor RSS left after {} B-line output"
MB = 1e6


def executor_pickups(world: World, child: ExecutorChild, pool: str, figures: Figures, count: int) -> None:
    """``count`` trivial runs one after the other: ms to the first line from the send and the create,
    and from the recipe's exit to the executor's "finished" log line."""
    source = world.source(pool, {"mode": "trivial"})
    from_sqs, from_create, wrapper, noticed = [], [], [], []
    for _ in range(count):
        urn, created = world.submit(source)
        stamp = wait_for(lambda u=urn: world.started(u), 60, f"{urn} to start")
        from_sqs.append((stamp["t"] - world.sent[urn]) * 1000)
        from_create.append((stamp["t"] - created) * 1000)
        wrapper.append(stamp["cpu"] * 1000)
        world.wait_result(urn)
        exited = read_stamp(world.stamps, f"{urn.rsplit(':', 1)[-1]}.exit")
        finished = wait_for(lambda u=urn: child.finished_at(u), 10, f"{urn} finished in the log")
        if exited is not None:
            noticed.append((finished - exited["t"]) * 1000)
    figures.add(PICKUP_SQS, "executor", from_sqs, "ms", world.sqs_server(pool))
    figures.add(PICKUP_GQL, "executor", from_create, "ms", world.sqs_server(pool))
    figures.add(WRAPPER, "executor", wrapper, "ms")
    figures.add(EXIT_NOTICED, "executor", noticed, "ms")


def celery_pickups(celery: CeleryAnchor, queue: str, figures: Figures, count: int) -> None:
    samples, wrapper = [], []
    for _ in range(count):
        [(tag, sent)] = celery.send(1, queue)
        stamp = wait_for(lambda t=tag: read_stamp(celery.stamps, f"{t}.start"), 60, f"celery {tag}")
        samples.append((stamp["t"] - sent) * 1000)
        wrapper.append(stamp["cpu"] * 1000)
        wait_for(lambda t=tag: celery.done(t), 60, f"celery {tag} done")
    figures.add(PICKUP_SQS, "celery", samples, "ms", "moto")
    figures.add(WRAPPER, "celery", wrapper, "ms")


def floor_pickups(floor: Floor, figures: Figures, count: int) -> None:
    """The floor's pickups, its bare start-up CPU, and from the stand-in's exit stamp to a bare
    parent's ``wait()`` returning: the stand-in's own interpreter teardown, which the executor's
    "exit -> noticed" includes too (the stamp is taken before it)."""
    samples, wrapper, reaped = [], [], []
    for index in range(count):
        tag = f"floor-{time.time_ns()}-{index}"
        samples.append(floor.pickup(tag))
        wrapper.append(float(read_stamp(floor.stamps, f"{tag}.start")["cpu"]) * 1000)  # type: ignore[index]
        done = wait_for(lambda t=tag: floor.reaped.get(t), 60, f"floor run {tag} reaped")
        exited = read_stamp(floor.stamps, f"{tag}.exit")
        if exited is not None:
            reaped.append((done - exited["t"]) * 1000)
    figures.add(PICKUP_SQS, "floor", samples, "ms", "moto")
    figures.add(WRAPPER, "floor", wrapper, "ms")
    figures.add(EXIT_NOTICED, "floor", reaped, "ms")


def executor_throughput(
    world: World,
    child: ExecutorChild,
    pool: str,
    workers: int,
    figures: Figures,
    count: int,
    bench_threads: Sequence[threading.Thread | None],
    server_at_rest: float = 0.0,
) -> None:
    """``count`` trivial runs at once; tasks/s until the last result is delivered; CPU per task
    (the executor's, and every process's: ``cost_rows``); with one worker, the cycle's gaps."""
    source = world.source(pool, {"mode": "trivial"})
    # One untimed task first: the spawn server stops after IDLE_S without a spawn, and its restart
    # (an interpreter's start-up) is no task's cost, as Celery's pool processes are long-lived.
    world.wait_result(world.submit(source)[0])
    before = cost_rows.executor_snapshot(child, bench_threads)
    urns, produced = submit_batch(world, source, count)
    for urn in urns:
        world.wait_result(urn)
    after = cost_rows.executor_snapshot(child, bench_threads)
    rate = count / batch_seconds(world, urns)
    figures.add(TPUT.format(workers), "executor", rate, "tasks/s", world.sqs_server(pool))
    cost_rows.add_cost_rows(figures, "executor", workers, before, after, count, server_at_rest, produced)
    if workers == 1:
        figures.add(CPU_TASK, "executor", cost_rows.own_side_ms(before, after, count), "ms")
        cost_rows.executor_cycle(world, child, urns, figures)


def submit_batch(world: World, source: str, count: int) -> tuple[list[str], float]:
    """``count`` requests created at once; their URNs and this thread's CPU seconds to create them
    (the producer's share, which Celery's side pays in its producer process)."""
    began = time.thread_time()
    urns = [world.submit(source)[0] for _ in range(count)]
    return urns, time.thread_time() - began


def batch_seconds(world: World, urns: Sequence[str]) -> float:
    """From the first request's ``SendMessage`` to the last result stored: the same window as
    Celery's rows (its first message on the wire to its last recipe reaped)."""
    return max(world.result_written_at(urn) for urn in urns) - min(world.sent[urn] for urn in urns)


def celery_throughput(
    celery: CeleryAnchor,
    worker: psutil.Process,
    queue: str,
    workers: int,
    figures: Figures,
    count: int,
    side: str = "celery",
    bench_threads: Sequence[threading.Thread | None] = (),
    server_at_rest: float = 0.0,
) -> None:
    cpu_before = _tree_cpu(worker)
    before = cost_rows.celery_snapshot(worker, celery.client.pid, bench_threads)
    sent = celery.send(count, queue)
    for tag, _ in sent:
        wait_for(lambda t=tag: celery.done(t), 120, f"celery {tag} done", 0.01)
    after = cost_rows.celery_snapshot(worker, celery.client.pid, bench_threads)
    # from the first message on the wire (``celery_side``'s stamps) to the last recipe reaped
    last = max(float(celery.done(tag)["t"]) for tag, _ in sent)  # type: ignore[index]
    if side == "celery":
        cost_rows.add_cost_rows(figures, side, workers, before, after, count, server_at_rest)
        if workers == 1:
            cost_rows.celery_cycle(celery.stamps, [tag for tag, _ in sent], figures)
    figures.add(
        TPUT.format(workers),
        side,
        count / (last - sent[0][1]),
        "tasks/s",
        "fauxqs" if "fauxqs" in side else "moto",
    )
    if workers == 1 and side == "celery":
        figures.add(CPU_TASK, "celery", cost_rows.per_task_ms(_tree_cpu(worker) - cpu_before, count), "ms")


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    """A worker and its pool processes (not the recipes they run)."""
    try:
        return [proc, *proc.children()]
    except psutil.Error:
        return [proc]


def _tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of a worker and its pool processes (not the recipes they reaped)."""
    total = 0.0
    for member in _tree(proc):
        try:
            total += own_cpu(member)
        except psutil.Error:
            continue
    return total


def _tree_woken(procs: list[psutil.Process]) -> dict[tuple[int, int], int]:
    """(pid, thread id) -> times scheduled in, for each live thread of ``procs``."""
    woken: dict[tuple[int, int], int] = {}
    for proc in procs:
        with contextlib.suppress(OSError):
            woken.update(((proc.pid, tid), runs) for tid, runs in threads_woken(proc.pid).items())
    return woken


def _window(read_cpu: Any, procs: list[psutil.Process], window_s: float) -> tuple[float, float]:
    """(CPU %, wake-ups a second) of ``procs`` in one window; wake-ups over the threads alive
    at both ends."""
    before, woken, began = read_cpu(), _tree_woken(procs), time.monotonic()
    time.sleep(window_s)
    cpu, woken_after, elapsed = read_cpu(), _tree_woken(procs), time.monotonic() - began
    wakes = sum(runs - woken[key] for key, runs in woken_after.items() if key in woken)
    return (cpu - before) / elapsed * 100, wakes / elapsed


def executor_sleeping(
    world: World, child: ExecutorChild, pool: str, figures: Figures, window_s: float
) -> None:
    """CPU of the executor while 4 recipes sleep (all four started, none finished), from its
    process CPU clock (ns; psutil's 10 ms ticks would be 0.33 % of a 3 s window, as coarse as
    the target's margin)."""
    runner_sleeping(world, child.ps, "executor", pool, figures, window_s)


def runner_sleeping(world: World, ps: psutil.Process, side: str, pool: str, figures: Figures,
                    window_s: float) -> None:
    """A runner's CPU and wake-ups while 4 recipes of ``pool`` sleep (the executor's, or the
    protocol done bare: ``bench.sleep_floor``)."""
    source = world.source(pool, {"mode": "sleep", "seconds": window_s + 2})
    urns = [world.submit(source)[0] for _ in range(4)]
    for urn in urns:
        wait_for(lambda u=urn: world.started(u), 60, f"{urn} to start")
    cpu, wakes = _window(lambda: own_cpu(ps), [ps], window_s)
    figures.add(CPU_SLEEP, side, cpu, "%")
    figures.add(SLEEP_WAKES, side, wakes, "wake-ups/s")
    for urn in urns:
        world.wait_result(urn)


def celery_sleeping(
    celery: CeleryAnchor, worker: psutil.Process, queue: str, figures: Figures, window_s: float
) -> None:
    sent = celery.send(4, queue, {"mode": "sleep", "seconds": window_s + 2})
    for tag, _ in sent:
        wait_for(lambda t=tag: read_stamp(celery.stamps, f"{t}.start"), 60, f"celery {tag} to start")
    cpu, wakes = _window(lambda: _tree_cpu(worker), _tree(worker), window_s)
    figures.add(CPU_SLEEP, "celery", cpu, "%")
    figures.add(SLEEP_WAKES, "celery", wakes, "wake-ups/s")
    for tag, _ in sent:
        wait_for(lambda t=tag: celery.done(t), 60, f"celery {tag} done", 0.01)


class RssWatch:
    """The peak RSS of a process, sampled every 20 ms in a thread while in a ``with`` block."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        """``(wall clock, RSS)`` of every sample, for the peak within a part of the window."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            rss = self.proc.memory_info().rss
            self.samples.append((time.time(), rss))
            self.peak = max(self.peak, rss)

    def peak_between(self, start: float, end: float) -> int:
        """The highest sample taken from ``start`` to ``end`` (wall clock); 0 if none was."""
        return max((rss for at, rss in self.samples if start <= at <= end), default=0)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def executor_output(
    world: World, child: ExecutorChild, pool: str, line: int, size: int, figures: Figures
) -> None:
    """A flood of ``size`` bytes in ``line``-byte lines: MB/s as the stand-in saw it, RSS growth."""
    source = world.source(pool, {"mode": "flood", "bytes": size, "line": line})
    before = child.ps.memory_info().rss
    with RssWatch(child.ps) as watch:
        urn, _ = world.submit(source)
        world.wait_result(urn, timeout_s=600)
    end = wait_for(lambda: read_stamp(world.stamps, f"{urn.rsplit(':', 1)[-1]}.end"), 10, "flood end stamp")
    figures.add(OUTPUT.format(line), "executor", size / (end["t"] - end["began"]) / MB, "MB/s")
    figures.add(OUTPUT_RSS.format(line), "executor", (watch.peak - before) / MB, "MB")
    flood_peak = watch.peak_between(end["began"], end["t"])
    if flood_peak:  # the window above also holds the finish: the result's report sent as JSON
        figures.add(OUTPUT_RSS_READ.format(line), "executor", (flood_peak - before) / MB, "MB")
    # "Left after the run": once the pool's own clean-up after its last task is done (it gives
    # the freed C heap back TRIM_AFTER_S after that task), not at the instant the result lands.
    time.sleep(TRIM_AFTER_S + 1.0)
    figures.add(OUTPUT_LEFT.format(line), "executor", (child.ps.memory_info().rss - before) / MB, "MB")
    forget_flood_logs(child.state_dir.glob("**/logs/*.log"))


def warm_output(world: World, child: ExecutorChild, pool: str, size: int) -> None:
    """One flood of 1 KiB lines through the executor, not timed, its log deleted: an executor
    child's first flood may run cold (one run's first 1 KiB row read 126 MB/s, its second 778,
    load 2-3), as the floor's drain process throws its first away for, and the first flood of a
    repeat found no pages a deleted log had just freed, as every later one did
    (performance-log.md, session 17). It waits for the
    pool's trim after it, as every output row does, so the next row's RSS starts from rest."""
    urn, _ = world.submit(world.source(pool, {"mode": "flood", "bytes": size, "line": 1024}))
    world.wait_result(urn, timeout_s=600)
    forget_flood_logs(child.state_dir.glob("**/logs/*.log"))
    time.sleep(TRIM_AFTER_S + 1.0)  # its freed C heap given back: the next row's RSS starts from rest


def forget_flood_logs(paths: Iterable[Path]) -> None:
    """Delete a flood's kept log once its row is taken, the executor's as the floor's: on this
    VM, memory the kernel has given back to the host costs several times more to write a page
    into than a page a deleted file just freed, so logs left behind would make each flood
    slower than the one before it and every row depend on how many ran before it. Deleted
    after each flood, every side writes its log from the same state."""
    for path in paths:
        path.unlink(missing_ok=True)


def floor_output(floor: Floor, line: int, size: int, figures: Figures) -> None:
    """The same flood read by a process of its own (``bench.drain``: the executor's 1 MiB pipe,
    one reused 1 MiB buffer): thrown away, then written to a file on the disk of the executor's
    task logs up to the executor's cap on a task log (no masking, no lines). Each is the least
    a reader with that duty does on this machine: "a pipe" any reader at all, "a pipe into a
    file" any executor that keeps the log as this one does."""
    for side, kept in (("floor (a pipe)", False), (KEPT_LOG_FLOOR, True)):
        tag = f"floor-flood-{time.time_ns()}"
        log = floor.stamps.parent / f"{tag}.log" if kept else None  # deleted once its row is taken
        floor.run(floor.envelope(tag, {"mode": "flood", "bytes": size, "line": line}), log, drain=True)
        end = read_stamp(floor.stamps, f"{tag}.end")
        assert end is not None
        figures.add(OUTPUT.format(line), side, size / (end["t"] - end["began"]) / MB, "MB/s")
        forget_flood_logs([log] if log else [])
