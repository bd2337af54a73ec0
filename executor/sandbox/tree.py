"""The process tree of one run, as psutil sees it: who is in it, what it uses, how to signal it.

Members are the union of the task cgroup's list (when there is one), the descendants of the
root process, and, every few samples, every process of the run's session (which catches
processes that were reparented after their parent died). CPU time of processes that have
gone is kept, so the total only grows.

Memory is what the tree really holds: the cgroup's own usage where the run has a memory
cgroup (the figure the kernel enforces), else the sum of the members' proportional set sizes
(``Pss`` in ``/proc/<pid>/smaps_rollup``: a page shared by n processes counts 1/n in each).
A sum of RSS would count a forked tree's shared pages once per process: 25 forked sleepers
holding 27 MiB read as 256 MiB. RSS is the fallback only where ``smaps_rollup`` is unreadable.
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
from dataclasses import dataclass
from typing import Literal

import psutil

from executor.sandbox.cgroups import TaskCgroup

MemorySource = Literal["cgroup", "pss", "rss"]


@dataclass(frozen=True)
class TreeSample:
    """One look at the tree; ``memory_source`` says how ``memory_bytes`` was measured."""

    memory_bytes: int
    cpu_seconds: float
    processes: int
    memory_source: MemorySource = "pss"


class ProcessTree:
    """Samples and signals the processes of one run; used by a single thread."""

    def __init__(self, root_pid: int, cgroup: TaskCgroup | None = None, session_scan_every: int = 5) -> None:
        self.root_pid = root_pid
        self._cgroup = cgroup
        self._scan_every = session_scan_every
        self._samples = 0
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_last: dict[int, float] = {}
        self._cpu_gone = 0.0

    def members(self, full: bool = False) -> dict[int, psutil.Process]:
        """Live (non-zombie) processes of the run, refreshed now; ``full`` forces a session scan."""
        pids: set[int] = set(self._procs)
        if self._cgroup is not None:
            pids |= self._cgroup.pids()
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.root_pid)
            pids.add(self.root_pid)
            pids.update(child.pid for child in root.children(recursive=True))
        if full or self._samples % self._scan_every == 0:
            pids |= self._session_members()
        self._samples += 1
        current: dict[int, psutil.Process] = {}
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None or not proc.is_running():
                    proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    current[pid] = proc
            except psutil.Error:
                continue
        for pid in set(self._cpu_last) - set(current):
            self._cpu_gone += self._cpu_last.pop(pid)
        self._procs = current
        return current

    def _session_members(self) -> set[int]:
        found = set()
        for pid in psutil.pids():
            with contextlib.suppress(OSError):
                if os.getsid(pid) == self.root_pid:
                    found.add(pid)
        return found

    def sample(self, full: bool = False) -> TreeSample:
        """Memory, CPU and process count of the tree now."""
        members = self.members(full)
        charged = self._cgroup.memory_usage() if self._cgroup is not None else None
        proportional, source = 0, "pss"
        for pid, proc in members.items():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    if charged is None:
                        pss = _pss(pid)
                        if pss is None:
                            pss, source = proc.memory_info().rss, "rss"
                        proportional += pss
                self._cpu_last[pid] = times.user + times.system
            except psutil.Error:
                continue
        cpu = self._cpu_gone + sum(self._cpu_last.values())
        if charged is not None:
            return TreeSample(charged, cpu, len(members), "cgroup")
        return TreeSample(proportional, cpu, len(members), "pss" if source == "pss" else "rss")

    def signal(self, sig: int) -> int:
        """Send ``sig`` to the run's process group and to every member; how many got it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.root_pid, sig)
        if sig == _signal.SIGKILL and self._cgroup is not None:
            self._cgroup.kill_all()
        sent = 0
        for proc in self.members().values():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
                sent += 1
        return sent


def _pss(pid: int) -> int | None:
    """The proportional set size of ``pid`` in bytes, from ``smaps_rollup``; None if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
