"""The process tree of one run: who is in it, what it uses, how to signal it.

Only the run's own processes are ever read, so a sample costs the same however many
processes the host runs. Members are found from the task cgroup's ``cgroup.procs`` where the
run has a cgroup (it holds every process of the run, whatever it did), else by walking down
from the root through the kernel's per-thread ``children`` lists (the main process is a child
subreaper, so what its descendants orphan stays below it). Members already known stay
members while they live. When the main process has exited without a cgroup, its leftovers
have been handed to init: the tree then also looks once for the processes of the run's
session. CPU time of processes that have gone is kept, so the total only grows.

Memory is what the tree really holds: the cgroup's own usage where the run has a memory
cgroup (the figure the kernel enforces). Otherwise it is the sum of proportional set sizes
(``Pss`` in ``smaps_rollup``: a page shared by n processes counts 1/n in each), because a
sum of RSS would count a forked tree's shared pages once per process (25 forked sleepers
holding 27 MiB read as 256 MiB). The kernel walks a process's whole address space to
compute its PSS, so each member's PSS is measured once as a baseline and then followed by
its RSS (from the stat line read anyway): ``PSS now ~ PSS then + (RSS now - RSS then)``.
Baselines are measured again when the membership of a multi-process tree changes (forks
and exits change what is shared), when a member runs another program, and, in a
multi-process tree, before the sum is called a breach. RSS stands in where ``smaps_rollup``
is unreadable.
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
from dataclasses import dataclass
from typing import Literal

from executor.sandbox.cgroups import TaskCgroup
from executor.sandbox.procfs import KeptFiles, ProcStat, children, parse_stat, pss_bytes, session_members

MemorySource = Literal["cgroup", "pss", "rss"]


@dataclass(frozen=True)
class TreeSample:
    """One look at the tree; ``memory_source`` says how ``memory_bytes`` was measured."""

    memory_bytes: int
    cpu_seconds: float
    processes: int
    memory_source: MemorySource = "pss"


class _Member:
    """One live process of the tree and its memory baseline."""

    __slots__ = ("base_pss", "base_rss", "comm", "cpu", "rss", "rss_only", "start")

    def __init__(self, stat: ProcStat) -> None:
        self.start = stat.start_ticks
        self.comm = stat.comm
        self.cpu = stat.cpu_seconds
        self.rss = stat.rss_bytes
        self.base_pss: int | None = None
        self.base_rss = 0
        self.rss_only = False

    def measure(self, pid: int) -> None:
        """A fresh PSS baseline (RSS where ``smaps_rollup`` is unreadable)."""
        pss = pss_bytes(pid)
        self.rss_only = pss is None
        self.base_pss = self.rss if pss is None else pss
        self.base_rss = self.rss

    @property
    def memory(self) -> int:
        if self.base_pss is None:
            return self.rss
        return max(0, self.base_pss + self.rss - self.base_rss)


class ProcessTree:
    """Samples and signals the processes of one run; used by a single thread.

    ``memory_limit`` is where a multi-process tree's estimate is checked against fresh PSS
    readings before it is reported over the limit.
    """

    def __init__(self, root_pid: int, cgroup: TaskCgroup | None = None,
                 memory_limit: int | None = None) -> None:
        self.root_pid = root_pid
        self._cgroup = cgroup if cgroup is not None and cgroup.dirs else None
        self._memory_limit = memory_limit
        self._files = KeptFiles()
        self._members: dict[int, _Member] = {}
        self._cpu_gone = 0.0
        self._session_scanned = False
        self._changed = False

    def members(self, exited: bool = False) -> set[int]:
        """The live (not zombie) processes of the run now; ``exited``: the main process is gone."""
        return set(self._refresh(exited))

    def _refresh(self, exited: bool) -> dict[int, _Member]:
        """Find the members and read their stat lines (and note whether the membership changed)."""
        candidates = {self.root_pid, *self._members}
        if self._cgroup is not None:
            candidates |= self._cgroup.procs()
        elif exited and not self._session_scanned:
            self._session_scanned = True
            candidates |= session_members(self.root_pid)
        walk = self._cgroup is None
        current: dict[int, _Member] = {}
        queue = list(candidates)
        while queue:
            pid = queue.pop()
            if pid in current:
                continue
            stat = self._stat(pid)
            if stat is None:
                continue
            current[pid] = self._update(pid, stat)
            if walk:
                queue.extend(children(self._files, pid, stat.threads) - current.keys())
        self._changed |= current.keys() != self._members.keys()
        for pid in self._members.keys() - current.keys():
            self._cpu_gone += self._members[pid].cpu
            self._files.forget_under(f"/proc/{pid}/")
        self._members = current
        return current

    def _stat(self, pid: int) -> ProcStat | None:
        """The stat line of a live member; None when it has gone (or is a zombie)."""
        try:
            stat = parse_stat(self._files.read(f"/proc/{pid}/stat"))
        except (OSError, ValueError, IndexError):
            return None
        known = self._members.get(pid)
        if known is not None and known.start != stat.start_ticks:  # the pid was reused
            self._cpu_gone += known.cpu
            del self._members[pid]
        return None if stat.gone else stat

    def _update(self, pid: int, stat: ProcStat) -> _Member:
        member = self._members.get(pid)
        if member is None:
            return _Member(stat)
        if stat.comm != member.comm:  # another program now: the old baseline says nothing
            member.comm, member.base_pss = stat.comm, None
        member.cpu = max(member.cpu, stat.cpu_seconds)
        member.rss = stat.rss_bytes
        return member

    def sample(self, exited: bool = False) -> TreeSample:
        """Memory, CPU and process count of the tree now."""
        members = self._refresh(exited)
        changed, self._changed = self._changed, False
        cpu = self._cpu_gone + sum(m.cpu for m in members.values())
        if self._cgroup is not None:
            cpu = max(cpu, self._cgroup.cpu_seconds() or 0.0)
            charged = self._cgroup.memory_usage()
            if charged is not None:
                return TreeSample(charged, cpu, len(members), "cgroup")
        memory = self._estimate(members, changed)
        rss_only = any(m.rss_only for m in members.values())
        return TreeSample(memory, cpu, len(members), "rss" if rss_only else "pss")

    def _estimate(self, members: dict[int, _Member], changed: bool) -> int:
        """The tree's PSS, measuring baselines only where they are missing or may be wrong."""
        several = len(members) > 1
        fresh = set()
        for pid, member in members.items():
            if member.base_pss is None or (changed and several):
                member.measure(pid)
                fresh.add(pid)
        total = sum(m.memory for m in members.values())
        limit = self._memory_limit
        if several and limit is not None and total > limit and fresh != members.keys():
            for pid, member in members.items():  # confirm before anyone calls it a breach
                if pid not in fresh:
                    member.measure(pid)
            total = sum(m.memory for m in members.values())
        return total

    def signal(self, sig: int) -> int:
        """Send ``sig`` to the run's process group and to every member; how many got it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.root_pid, sig)
        if sig == _signal.SIGKILL and self._cgroup is not None:
            self._cgroup.kill_all()
        sent = 0
        for pid in self._refresh(False):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                sent += 1
        return sent

    def close(self) -> None:
        """Close the descriptors kept open for sampling."""
        self._files.close()
