"""Memory limit crossed -> process dead, and the reported peak against the limit.

A hog grows at about 1 GiB/s inside a real ``SandboxRun`` with the executor's default sampling
(100 ms) and grace (10 s): with the task's cgroup (the kernel enforces), with the psutil monitor
alone, and with the monitor alone while the hog ignores SIGTERM. The hog appends ``t rss`` after
each step to a progress file; the crossing is the first line over the limit (with a cgroup, the
kernel kills before one is written: the last line is then the crossing, within one step). The
death is seen from outside through a pidfd on the hog's pid.
"""

from __future__ import annotations

import os
import select
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from bench.stats import Figures
from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec, build_env
from executor.sandbox.cgroups import detect_cgroups
from executor.sandbox.limits import MiB

DEAD = "memory limit crossed -> process dead"
PEAK = "reported peak / memory limit"
LIMIT = 256 * MiB
HOG = textwrap.dedent("""
    import os, signal, sys, time
    limit, progress, ignore = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    step, rate, hold = 16 * 2**20, 2**30, []
    began = time.monotonic()
    with open(progress, "a", buffering=1) as out:
        while len(hold) * step < 4 * limit and time.monotonic() - began < 20:
            hold.append(b"\\x01" * step)
            rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            out.write(f"{time.time()} {rss}\\n")
            ahead = len(hold) * step / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        time.sleep(20)
""")


def _crossing(progress: Path) -> float | None:
    rows = [line.split() for line in progress.read_text().splitlines() if line.strip()]
    over = [float(t) for t, rss in rows if int(rss) > LIMIT]
    return over[0] if over else float(rows[-1][0]) if rows else None


def _death_time(pid: int, out: list[float]) -> None:
    fd = os.pidfd_open(pid)
    try:
        select.select([fd], [], [], 60)
        out.append(time.time())
    finally:
        os.close(fd)


def one_hog(side: str, use_cgroup: bool, ignore_term: bool, figures: Figures) -> None:
    """Run the hog once; add the ms from crossing to death and the peak / limit ratio."""
    with tempfile.TemporaryDirectory(prefix="bench-hog-") as tmp:
        progress = Path(tmp) / "progress"
        work_root = Path(tmp) / "work"
        spec = SandboxSpec(
            argv=[sys.executable, "-c", HOG, str(LIMIT), str(progress), "1" if ignore_term else "0"],
            work_root=work_root,
            env=build_env(os.environ, {}, {}, work_root),
            limits=SandboxLimits(memory_bytes=LIMIT),
            task_id="bench-hog",
            use_cgroup=use_cgroup,
        )
        run = SandboxRun(spec)
        run.start()
        pid = run.pid
        assert pid is not None
        died: list[float] = []
        watcher = threading.Thread(target=_death_time, args=(pid, died), daemon=True)
        watcher.start()
        result = run.wait(60)
        watcher.join(60)
        assert result is not None and died, "the hog did not end"
        crossed = _crossing(progress)
        if crossed is not None:
            figures.add(DEAD, side, (died[0] - crossed) * 1000, "ms")
        figures.add(PEAK, side, result.peak_rss_bytes / LIMIT, "x")
        if result.breach is None or result.breach.limit != "memory":
            figures.notes.append(f"{side}: the hog ended without a memory breach ({result.outcome})")


def memory_rows(figures: Figures) -> None:
    """One repeat of each variant."""
    if detect_cgroups().active:
        one_hog("cgroup", True, False, figures)
    one_hog("psutil only", False, False, figures)
    one_hog("psutil only, SIGTERM ignored", False, True, figures)
