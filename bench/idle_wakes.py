"""An executor at rest, thread by thread: CPU and wake-ups per window, beside a bare thread's.

Usage (in the project's venv):
``python -m bench.idle_wakes [SECONDS] [WINDOWS] [POOLS] [SLEEPING]`` (default 60 s, 2 windows,
1 pool, no recipe). With SLEEPING, that many recipes (the stand-in's sleep mode) run in the first
pool through every window, the first window beginning once they have all started, as the bench's
"CPU while 4 recipes sleep" row: that row thread by thread. It starts the local control plane
and one executor child with POOLS pools (their leases point at moto directly, as the bench's
rows), waits until it is up and at rest (no child process), then reads every thread's
``/proc/<pid>/task/<tid>/schedstat`` at both ends of each window: on-CPU ms and the times it
was scheduled in ("wake-ups").

Beside it, in this process, a bare Python thread sleeps ``BARE_SLEEP_S`` at a time and does
nothing else: its CPU per wake-up is what this machine charges a thread for waking after a long
sleep (session 19: 1.2-1.5 ms after 1 s, 2.7-5 ms after 5 s on the project's VM, 38 us after
10 ms), so an executor's idle figure is roughly its wake-ups times that, whatever it does when
awake. The windows should span a whole at-rest cycle: the long poll (``poll_wait_s``, 20 s)
and the presence report (30 s) repeat every 60 s.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.world import World, schedstat, wait_for

BARE_SLEEP_S = 5.0
"""The bare thread's sleep (at most half a window): the executor's beat before session 19."""
UP_TIMEOUT_S = 60.0
WARM_UP_S = 10.0
"""After the start: the lease, the first receives and the first presence report are behind it."""


def snapshot(pid: int | str) -> dict[int, tuple[str, int, int]]:
    """Thread id -> (kernel name, on-CPU ns, times scheduled in) of each live thread of ``pid``."""
    threads: dict[int, tuple[str, int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended between the listing and the read
        stat = schedstat(task)
        if stat is not None:
            threads[int(task.name)] = (name, *stat)
    return threads


def window_lines(before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]],
                 elapsed_s: float) -> list[str]:
    """One line per thread that ran in the window (alive at both ends), then the total."""
    lines, cpu_ns, wakes = [], 0, 0
    for tid, (name, ns, runs) in sorted(after.items(), key=lambda item: item[1][0]):
        if tid not in before:
            continue
        used, woke = ns - before[tid][1], runs - before[tid][2]
        cpu_ns, wakes = cpu_ns + used, wakes + woke
        if woke:
            lines.append(f"  {name:16s} {used / 1e6:7.2f} ms {woke:5d} wake-ups")
    lines.append(f"  total            {cpu_ns / 1e6:7.2f} ms {wakes:5d} wake-ups in {elapsed_s:.1f} s: "
                 f"{cpu_ns / 1e9 / elapsed_s * 100:.3f} % of a core, {wakes / elapsed_s:.2f} wake-ups/s")
    return lines


class BareSleeper:
    """A thread that only sleeps ``sleep_s`` at a time, counting its CPU and wake-ups."""

    def __init__(self, sleep_s: float) -> None:
        self.sleep_s = sleep_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bare-sleeper", daemon=True)
        self.tid = 0
        self._thread.start()

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        while not self._stop.wait(self.sleep_s):
            pass

    def read(self) -> tuple[int, int]:
        """(on-CPU ns, times scheduled in) so far."""
        stat = schedstat(Path(f"/proc/self/task/{self.tid}"))
        assert stat is not None, "the bare thread lives until stop"
        return stat

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(window_s: float, windows: int, pools: int, sleeping: int = 0) -> None:
    names = tuple(f"idle{n}" for n in range(1, pools + 1))
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), names, direct=names)
        bare = BareSleeper(min(BARE_SLEEP_S, window_s / 2))
        try:
            child = world.executor([{"id": name, "max_workers": max(4, sleeping)} for name in names])
            wait_for(lambda: "executor started" in child.log_path.read_text(errors="replace") or None,
                     UP_TIMEOUT_S, "the executor's start", 0.1)
            time.sleep(WARM_UP_S)
            wait_for(lambda: not child.ps.children() or None, UP_TIMEOUT_S, "the executor at rest", 0.5)
            urns = _start_sleepers(world, names[0], sleeping, window_s * windows + 8)
            print(f"one executor with {pools} pool(s) and {sleeping} sleeping recipe(s), "
                  f"{windows} window(s) of {window_s:g} s", flush=True)
            for number in range(1, windows + 1):
                before, bare_before, began = snapshot(child.ps.pid), bare.read(), time.monotonic()
                time.sleep(window_s)
                after, bare_after, elapsed = snapshot(child.ps.pid), bare.read(), time.monotonic() - began
                print(f"window {number}:", flush=True)
                print("\n".join(window_lines(before, after, elapsed)), flush=True)
                woke = max(1, bare_after[1] - bare_before[1])
                print(f"  a bare thread waking every {bare.sleep_s:g} s: "
                      f"{(bare_after[0] - bare_before[0]) / 1e3 / woke:.0f} us per wake-up", flush=True)
            for urn in urns:
                world.wait_result(urn)
        finally:
            bare.stop()
            world.close()


def _start_sleepers(world: World, pool: str, count: int, seconds: float) -> list[str]:
    """``count`` recipes sleeping ``seconds`` in ``pool``, each started (its first line written)."""
    if not count:
        return []
    source = world.source(pool, {"mode": "sleep", "seconds": seconds})
    urns = [world.submit(source)[0] for _ in range(count)]
    for urn in urns:
        wait_for(lambda u=urn: world.started(u), UP_TIMEOUT_S, f"{urn} to start")
    return urns


def main(argv: list[str]) -> None:
    window_s = float(argv[0]) if argv else 60.0
    windows = int(argv[1]) if len(argv) > 1 else 2
    pools = int(argv[2]) if len(argv) > 2 else 1
    sleeping = int(argv[3]) if len(argv) > 3 else 0
    measure(window_s, windows, pools, sleeping)


if __name__ == "__main__":
    main(sys.argv[1:])
