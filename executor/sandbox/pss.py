"""The memory of a tree without a memory cgroup: its proportional set size, kept cheap.

A sum of RSS counts a forked tree's shared pages once per process (25 forked sleepers holding
27 MiB read as 256 MiB), so the tree's memory is the sum of its members' PSS (``Pss`` in
``smaps_rollup``: a page shared by n processes counts 1/n in each). But the kernel walks a
process's whole address space to compute it (about 0.1 s per GiB on a loaded VM), far too
slow for every sample. So each member's PSS is measured once, as a baseline, and then
followed by its private RSS (anonymous and shared-memory pages, from ``/proc/<pid>/status``,
which is what grows when a process allocates): ``PSS now ~ PSS then + private now - private
then``. File-backed pages are not followed: a forked child faulting in the libraries it
shares with its parent grows its RSS, not the tree's PSS.

Forks and exits change what is shared without changing anyone's private RSS. A new member's
shared part (its PSS less its own pages, ``Private_*``) was already counted in the members
that share those pages with it, so it is taken off the total; when a member leaves, its
shared part goes back to the others. That keeps the sum right without measuring every member
again on every fork. All members are measured again every two minutes, and before a
multi-process tree's estimate is called over the limit. RSS stands in where
``smaps_rollup`` is unreadable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

BASELINE_MAX_AGE_S = 120.0
"""Every baseline is measured again after this long, whatever else happened."""


@dataclass(frozen=True)
class Rollup:
    """What ``smaps_rollup`` says about one process: its PSS and its own (unshared) pages."""

    pss: int
    private: int


def read_rollup(pid: int) -> Rollup | None:
    """``Pss`` and ``Private_Clean + Private_Dirty`` of ``pid``; an empty rollup (a process
    tearing down its memory) reads as nothing; None when it cannot be read (permissions)."""
    found = {b"Pss:": 0, b"Private_Clean:": 0, b"Private_Dirty:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                key = line.split(None, 1)[0] if line.strip() else b""
                if key in found:
                    found[key] = int(line.split()[1]) * 1024
    except (ProcessLookupError, FileNotFoundError):
        return Rollup(0, 0)
    except (OSError, ValueError, IndexError):
        return None
    return Rollup(found[b"Pss:"], found[b"Private_Clean:"] + found[b"Private_Dirty:"])


class Baseline:
    """One member's last measured PSS and the private RSS it had then."""

    __slots__ = ("at", "private_rss", "pss", "shared", "unreadable")

    def __init__(self, pid: int, rss: int, private_rss: int, now: float) -> None:
        rollup = read_rollup(pid)
        self.unreadable = rollup is None
        self.pss = rss if rollup is None else rollup.pss
        self.shared = 0 if rollup is None else max(0, rollup.pss - rollup.private)
        self.private_rss = private_rss
        self.at = now

    def now(self, private_rss: int) -> int:
        """The PSS now, followed from the baseline by the private RSS."""
        return max(0, self.pss + private_rss - self.private_rss)


@dataclass
class Usage:
    """What the estimator needs of one member in one sample."""

    rss: int
    private_rss: int


class PssEstimate:
    """The PSS of one tree across samples; used by one thread.

    ``limit``: before a multi-process tree is reported above it, every member is measured.
    """

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._bases: dict[int, Baseline] = {}
        self._adjust = 0
        self.unreadable = False

    def forget(self, pid: int, program_changed: bool = False) -> None:
        """``pid`` left the tree (its shared pages go back to the others), or runs another
        program (``program_changed``: its baseline says nothing about it any more)."""
        base = self._bases.pop(pid, None)
        if base is not None and not program_changed:
            self._adjust += base.shared

    def total(self, members: dict[int, Usage]) -> int:
        """The tree's PSS now."""
        now = time.monotonic()
        for pid in self._bases.keys() - members.keys():
            self.forget(pid)
        if any(now - base.at > BASELINE_MAX_AGE_S for base in self._bases.values()):
            self._measure_all(members, now)
        new = members.keys() - self._bases.keys()
        if new and not self._bases:  # nobody counted any shared page yet: plain sum
            self._measure_all(members, now)
        for pid in new - self._bases.keys():
            base = self._bases[pid] = Baseline(pid, members[pid].rss, members[pid].private_rss, now)
            self._adjust -= base.shared
        total = self._sum(members)
        fresh = all(base.at == now for base in self._bases.values())
        if self._limit is not None and total > self._limit and len(members) > 1 and not fresh:
            self._measure_all(members, now)  # confirm before anyone calls it a breach
            total = self._sum(members)
        self.unreadable = any(base.unreadable for base in self._bases.values())
        return total

    def _sum(self, members: dict[int, Usage]) -> int:
        return max(0, sum(self._bases[pid].now(use.private_rss) for pid, use in members.items())
                   + self._adjust)

    def _measure_all(self, members: dict[int, Usage], now: float) -> None:
        self._bases = {pid: Baseline(pid, use.rss, use.private_rss, now) for pid, use in members.items()}
        self._adjust = 0
