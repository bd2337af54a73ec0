"""The idle rows: RSS, PSS, threads, CPU and wake-ups of processes at rest, in one common window.

Measured from outside, as every row: psutil for memory and threads, each thread's ``schedstat``
for its CPU (ns) and the times it was scheduled in (at rest, its wake-ups).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psutil

from bench.rows import IDLE_CPU, IDLE_PSS, IDLE_RSS, IDLE_THREADS, IDLE_WAKES, MB
from bench.stats import Figures
from bench.world import threads_cpu, threads_woken


def pss_bytes(pid: int) -> int:
    """The proportional set size of ``pid`` (``smaps_rollup``): a page shared by n processes
    counts 1/n, so a group's sum counts a shared page (libpython, libc) once."""
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _members(proc: psutil.Process) -> list[psutil.Process]:
    """The process and its children now (the spawn server comes and goes with the executor's use)."""
    try:
        return [proc, *proc.children()]
    except psutil.NoSuchProcess:
        return [proc]


def _group_memory(group: list[psutil.Process]) -> tuple[float, float, float]:
    """Summed RSS, PSS and threads of the members still alive."""
    rss = pss = threads = 0.0
    for member in group:
        try:
            rss, pss = rss + member.memory_info().rss, pss + pss_bytes(member.pid)
            threads += member.num_threads()
        except (psutil.NoSuchProcess, OSError):
            continue
    return rss, pss, threads


def at_rest(procs: dict[tuple[str, int], psutil.Process], timeout_s: float) -> None:
    """Wait (up to ``timeout_s``) until no process has a child left from its last task (the
    executor's spawn server stops after ``IDLE_S`` without a spawn): idle means at rest."""
    began = time.monotonic()

    def busy() -> list[int]:
        return [pools for (side, pools), p in procs.items() if side == "executor" and len(_members(p)) > 1]

    while left := busy():
        if time.monotonic() - began > timeout_s:
            print(f"note: the executor(s) with {left} pool(s) not at rest {timeout_s:.0f} s after the idle "
                  "rows began waiting (a child left: the spawn server); measured as they are", flush=True)
            return
        time.sleep(0.5)


def idle(procs: dict[tuple[str, int], psutil.Process], figures: Figures, window_s: float) -> None:
    """RSS (and PSS), threads and CPU of processes at rest (after their warm-up), in one common
    window. RSS sums each member's resident pages, so a page a second process shares (libpython,
    libc) counts twice; PSS counts it once: both rows are kept."""
    members = {key: _members(proc) for key, proc in procs.items()}
    pids = {key: [m.pid for m in group] for key, group in members.items()}
    before_each = {pid: _threads_or_none(pid) for group in pids.values() for pid in group}
    woken_before = {pid: _woken_or_none(pid) for group in pids.values() for pid in group}
    began = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - began
    for (side, pools), proc in procs.items():
        used = _window_cpu(pids[(side, pools)], before_each)
        woken = _window_wakes(pids[(side, pools)], woken_before)
        rss, pss, threads = _group_memory(_members(proc))
        figures.add(IDLE_CPU.format(pools), side, used / elapsed * 100, "%")
        figures.add(IDLE_WAKES.format(pools), side, woken / elapsed, "wake-ups/s")
        figures.add(IDLE_RSS.format(pools), side, rss / MB, "MB")
        figures.add(IDLE_PSS.format(pools), side, pss / MB, "MB")
        figures.add(IDLE_THREADS.format(pools), side, threads, "threads")


def _window_cpu(pids: Sequence[int], before: dict[int, dict[int, float]]) -> float:
    """CPU seconds the members' threads used in the window, over the threads alive at both ends.
    A thread or a member that ended in it (a spare thread letting go, a spawn server stopping at
    its idle time) is left out: its CPU can no longer be read, and subtracting its earlier
    figure alone made the row negative (session 18's full run: -4.1 %)."""
    used = 0.0
    for pid in pids:
        start, end = before[pid], _threads_or_none(pid)
        used += sum(cpu - start[tid] for tid, cpu in end.items() if tid in start)
    return used


def _window_wakes(pids: Sequence[int], before: dict[int, dict[int, int]]) -> int:
    """Wake-ups of the members' threads in the window, over the threads alive at both ends."""
    woken = 0
    for pid in pids:
        start, end = before[pid], _woken_or_none(pid)
        woken += sum(runs - start[tid] for tid, runs in end.items() if tid in start)
    return woken


def _woken_or_none(pid: int) -> dict[int, int]:
    try:
        return threads_woken(pid)
    except OSError:
        return {}


def _threads_or_none(pid: int) -> dict[int, float]:
    try:
        return threads_cpu(pid)
    except OSError:
        return {}
