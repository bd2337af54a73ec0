"""The executor-against-Celery rows: pickup, throughput, CPU per task, CPU while recipes sleep,
idle cost, and output throughput. Each function runs one repeat of one side and adds its samples.

Everything about the executor is measured from outside its process: psutil on its pid (CPU,
RSS, threads) and the stand-in's own timestamps (first line, flood start and end).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bench import cost_rows
from bench.anchor import CeleryAnchor, Floor
from bench.stats import Figures
from bench.world import ExecutorChild, World, read_stamp, wait_for

PICKUP_SQS = "send -> first line (from the SQS send)"
PICKUP_GQL = "send -> first line (from the GraphQL create call)"
TPUT = "trivial tasks/s, {} worker(s)"
CPU_TASK = "executor CPU per task"
WRAPPER = "CPU of the exec wrapper + CLI start-up"
EXIT_NOTICED = "recipe exit -> result noticed"
CPU_SLEEP = "CPU while 4 recipes sleep"
IDLE_RSS = "idle RSS, {} pool(s)"
IDLE_THREADS = "idle threads, {} pool(s)"
IDLE_CPU = "idle CPU, {} pool(s)"
OUTPUT = "output throughput, {} B lines (masking on)"
OUTPUT_RSS = "executor RSS growth during {} B-line output"
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
    figures.add(PICKUP_SQS, "executor", from_sqs, "ms", "moto via gateway")
    figures.add(PICKUP_GQL, "executor", from_create, "ms", "moto via gateway")
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
    samples, wrapper = [], []
    for index in range(count):
        tag = f"floor-{time.time_ns()}-{index}"
        samples.append(floor.pickup(tag))
        wrapper.append(float(read_stamp(floor.stamps, f"{tag}.start")["cpu"]) * 1000)  # type: ignore[index]
    figures.add(PICKUP_SQS, "floor", samples, "ms", "moto")
    figures.add(WRAPPER, "floor", wrapper, "ms")


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
    before = cost_rows.executor_snapshot(child, bench_threads)
    began = time.time()
    urns = [world.submit(source)[0] for _ in range(count)]
    for urn in urns:
        world.wait_result(urn)
    elapsed = time.time() - began
    after = cost_rows.executor_snapshot(child, bench_threads)
    figures.add(TPUT.format(workers), "executor", count / elapsed, "tasks/s", "moto via gateway")
    cost_rows.add_cost_rows(figures, "executor", workers, before, after, count, server_at_rest)
    if workers == 1:
        figures.add(CPU_TASK, "executor", (after.runner - before.runner) / count * 1000, "ms")
        cost_rows.executor_cycle(world, child, urns, figures)


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
        figures.add(CPU_TASK, "celery", (_tree_cpu(worker) - cpu_before) / count * 1000, "ms")


def _tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of a worker and its pool processes (not the recipes they reaped)."""
    total = 0.0
    for member in [proc, *proc.children()]:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _cpu_percent(read_cpu: Any, window_s: float) -> float:
    before, began = read_cpu(), time.monotonic()
    time.sleep(window_s)
    return (read_cpu() - before) / (time.monotonic() - began) * 100


def executor_sleeping(
    world: World, child: ExecutorChild, pool: str, figures: Figures, window_s: float
) -> None:
    """CPU of the executor while 4 recipes sleep (all four started, none finished)."""
    source = world.source(pool, {"mode": "sleep", "seconds": window_s + 2})
    urns = [world.submit(source)[0] for _ in range(4)]
    for urn in urns:
        wait_for(lambda u=urn: world.started(u), 60, f"{urn} to start")
    figures.add(CPU_SLEEP, "executor", _cpu_percent(child.cpu, window_s), "%")
    for urn in urns:
        world.wait_result(urn)


def celery_sleeping(
    celery: CeleryAnchor, worker: psutil.Process, queue: str, figures: Figures, window_s: float
) -> None:
    sent = celery.send(4, queue, {"mode": "sleep", "seconds": window_s + 2})
    for tag, _ in sent:
        wait_for(lambda t=tag: read_stamp(celery.stamps, f"{t}.start"), 60, f"celery {tag} to start")
    figures.add(CPU_SLEEP, "celery", _cpu_percent(lambda: _tree_cpu(worker), window_s), "%")
    for tag, _ in sent:
        wait_for(lambda t=tag: celery.done(t), 60, f"celery {tag} done", 0.01)


def thread_cpu(pid: int) -> float:
    """CPU seconds of the live threads of ``pid`` from ``schedstat`` (nanoseconds, where the
    process-wide figure moves in 10 ms ticks): precise enough for a process at rest."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def idle(procs: dict[tuple[str, int], psutil.Process], figures: Figures, window_s: float) -> None:
    """RSS, threads and CPU of processes at rest (after their warm-up), in one common window."""
    members = {key: [proc, *proc.children()] for key, proc in procs.items()}
    pids = {key: [m.pid for m in group] for key, group in members.items()}
    before, began = (
        {key: sum(thread_cpu(pid) for pid in group) for key, group in pids.items()},
        time.monotonic(),
    )
    time.sleep(window_s)
    elapsed = time.monotonic() - began
    for (side, pools), group in members.items():
        used = sum(thread_cpu(pid) for pid in pids[(side, pools)]) - before[(side, pools)]
        figures.add(IDLE_CPU.format(pools), side, used / elapsed * 100, "%")
        figures.add(IDLE_RSS.format(pools), side, sum(m.memory_info().rss for m in group) / MB, "MB")
        figures.add(IDLE_THREADS.format(pools), side, float(sum(m.num_threads() for m in group)), "threads")


class RssWatch:
    """The peak RSS of a process, sampled every 20 ms in a thread while in a ``with`` block."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

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
    figures.add(OUTPUT_LEFT.format(line), "executor", (child.ps.memory_info().rss - before) / MB, "MB")


def floor_output(floor: Floor, line: int, size: int, figures: Figures) -> None:
    """The same flood into a plain pipe drained in 1 MiB reads."""
    tag = f"floor-flood-{time.time_ns()}"
    floor.run(floor.envelope(tag, {"mode": "flood", "bytes": size, "line": line}))
    end = read_stamp(floor.stamps, f"{tag}.end")
    assert end is not None
    figures.add(OUTPUT.format(line), "floor (a pipe)", size / (end["t"] - end["began"]) / MB, "MB/s")
