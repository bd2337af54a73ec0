"""What the figures ran on, and what the machine charged that day for two things every task pays.

The same code's figures have moved by up to 1.8x between runs on the project's VM
(docs/performance.md, "Machine of the latest run"), and two prices explained much of it once
measured, so each run prints them before its rows:

* **a new file in the bench's directory**: the CPU of making one (``O_CREAT | O_EXCL``). Every
  task of a sandboxed side makes its task log there. On ext4 without a journal the kernel
  allocates a new inode past every inode of the group freed in the last few seconds (or, while
  its inode table block waits to be written back, the last five minutes), so the price follows
  what else made and deleted files near the directory: 6 us a file in a quiet directory of the
  project's VM, 120-170 us under a ``/tmp`` that held 620,000 inodes of old clones (session 26),
  and 15-50 us for minutes after those were removed;
* **a wake-up after a sleep**: the CPU a bare thread is charged for each wake-up after
  ``WAKE_SLEEP_S`` asleep (``bench.idle_wakes`` has the longer form: 115-370 us in session 20,
  1.9-5.8 ms in session 25). The rows of recipes asleep and at rest are wake-ups times that.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from bench.idle_wakes import BareSleeper
from executor.sandbox.cgroups import detect_cgroups

NEW_FILES = 200
WAKE_SLEEP_S = 1.0
WAKES = 3


def machine(directory: Path) -> dict[str, str]:
    """What the figures ran on (no paths), with the two prices measured now in ``directory``."""
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cgroups": detect_cgroups().version,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "a new file in the bench's directory": _us(new_file_price_us(directory)),
        f"a thread's wake-up after {WAKE_SLEEP_S:g} s asleep": _us(wake_price_us()),
    }


def _us(figure: float) -> str:
    """A price as printed; a kernel without per-thread ``schedstat`` gives none."""
    return "not measured here" if math.isnan(figure) else f"{figure:.0f} us of CPU"


def new_file_price_us(directory: Path, count: int = NEW_FILES) -> float:
    """This thread's CPU per file made in a fresh directory under ``directory`` (removed after)."""
    place = Path(tempfile.mkdtemp(prefix="new-files-", dir=directory))
    try:
        began = time.thread_time_ns()
        for index in range(count):
            os.close(os.open(place / f"{index}.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return (time.thread_time_ns() - began) / count / 1e3
    finally:
        shutil.rmtree(place)


def wake_price_us(sleep_s: float = WAKE_SLEEP_S, wakes: int = WAKES) -> float:
    """The median CPU a bare thread was charged per time it was scheduled in, over ``wakes``
    sleeps of ``sleep_s`` (its first run, the thread's start, is left out); NaN where the
    kernel keeps no per-thread ``schedstat``."""
    if not Path("/proc/thread-self/schedstat").exists():
        return math.nan
    sleeper = BareSleeper(sleep_s)
    try:
        time.sleep(sleep_s / 2)  # started and asleep: the first reading is past its start
        figures = []
        last = sleeper.read()
        for _ in range(wakes):
            time.sleep(sleep_s)
            now = sleeper.read()
            if now[1] > last[1]:
                figures.append((now[0] - last[0]) / (now[1] - last[1]) / 1e3)
            last = now
        return statistics.median(figures) if figures else math.nan
    finally:
        sleeper.stop()
