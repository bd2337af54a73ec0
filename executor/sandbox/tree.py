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
cgroup (the figure the kernel enforces), else the sum of proportional set sizes, estimated
cheaply (``pss``).
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
from dataclasses import dataclass
from typing import Literal

from executor.sandbox.cgroups import TaskCgroup
from executor.sandbox.procfs import KeptFiles, ProcStat, children, parse_stat, private_rss, session_members
from executor.sandbox.pss import PssEstimate, Usage

MemorySource = Literal["cgroup", "pss", "rss"]


@dataclass(frozen=True)
class TreeSample:
    """One look at the tree; ``memory_source`` says how ``memory_bytes`` was measured."""

    memory_bytes: int
    cpu_seconds: float
    processes: int
    memory_source: MemorySource = "pss"


@dataclass
class _Member:
    """One live process of the tree, as its last stat line showed it."""

    start: int
    comm: bytes
    cpu: float
    rss: int


class ProcessTree:
    """Samples and signals the processes of one run; used by a single thread.

    ``memory_limit`` is where a multi-process tree's PSS estimate is checked against fresh
    measurements before it is reported over the limit.
    """

    def __init__(self, root_pid: int, cgroup: TaskCgroup | None = None,
                 memory_limit: int | None = None) -> None:
        self.root_pid = root_pid
        self._cgroup = cgroup if cgroup is not None and cgroup.dirs else None
        self._files = KeptFiles()
        self._members: dict[int, _Member] = {}
        self._cpu_gone = 0.0
        self._session_scanned = False
        self._pss = PssEstimate(memory_limit)

    def members(self, exited: bool = False) -> set[int]:
        """The live (not zombie) processes of the run now; ``exited``: the main process is gone."""
        return set(self._refresh(exited))

    def _refresh(self, exited: bool) -> dict[int, _Member]:
        """Find the members and read their stat lines."""
        candidates = {self.root_pid, *self._members}
        if self._cgroup is not None:
            candidates |= self._cgroup.procs()
        elif exited and not self._session_scanned:
            self._session_scanned = True
            candidates |= session_members(self.root_pid)
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
            if self._cgroup is None:
                queue.extend(children(self._files, pid, stat.threads) - current.keys())
        for pid in self._members.keys() - current.keys():
            self._gone(pid)
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
            self._gone(pid)
            del self._members[pid]
        return None if stat.gone else stat

    def _gone(self, pid: int) -> None:
        self._cpu_gone += self._members[pid].cpu
        self._pss.forget(pid)
        self._files.forget_under(f"/proc/{pid}/")

    def _update(self, pid: int, stat: ProcStat) -> _Member:
        member = self._members.get(pid)
        if member is None:
            return _Member(stat.start_ticks, stat.comm, stat.cpu_seconds, stat.rss_bytes)
        if stat.comm != member.comm:  # another program now: its memory baseline says nothing
            member.comm = stat.comm
            self._pss.forget(pid, program_changed=True)
        member.cpu = max(member.cpu, stat.cpu_seconds)
        member.rss = stat.rss_bytes
        return member

    def sample(self, exited: bool = False) -> TreeSample:
        """Memory, CPU and process count of the tree now."""
        members = self._refresh(exited)
        cpu = self._cpu_gone + sum(m.cpu for m in members.values())
        if self._cgroup is not None:
            cpu = max(cpu, self._cgroup.cpu_seconds() or 0.0)
            if not members and self._cgroup.memory_dir is not None:  # its leftover charge (page
                # cache) is no process's: a tree with no process holds nothing
                return TreeSample(0, cpu, 0, "cgroup")
            charged = self._cgroup.memory_usage()
            if charged is not None:
                return TreeSample(charged, cpu, len(members), "cgroup")
        usage = {}
        for pid, member in members.items():
            private = private_rss(self._files, pid)
            usage[pid] = Usage(member.rss, member.rss if private is None else private)
        memory = self._pss.total(usage)
        return TreeSample(memory, cpu, len(members), "rss" if self._pss.unreadable else "pss")

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
