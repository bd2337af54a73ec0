"""Cheap reads of ``/proc`` for the monitor: one process's stat line, its children, its PSS.

The monitor samples every running task for its whole life, so what it reads must cost the
same however many processes the host runs: only the task's own processes are read (psutil's
``children()`` reads the stat file of every process on the host to build its parent map).
Files read often are opened once and read again with ``pread`` (``KeptFiles``): a kept
``/proc/<pid>/...`` descriptor belongs to that process, so once it has gone the read fails
with ESRCH instead of describing a newcomer that got the same pid.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProcStat:
    """What the monitor needs from ``/proc/<pid>/stat``, in one read."""

    comm: bytes
    state: str
    session: int
    threads: int
    cpu_seconds: float
    start_ticks: int
    rss_bytes: int

    @property
    def gone(self) -> bool:
        """A zombie (exited, not yet reaped by its parent) or a dead task: no longer running."""
        return self.state in ("Z", "X", "x")


def parse_stat(raw: bytes) -> ProcStat:
    """Parse a stat line; ``comm`` may hold spaces and parentheses, so split at the last ``)``."""
    head, _, tail = raw.rpartition(b") ")
    fields = tail.split()
    return ProcStat(
        comm=head.partition(b" (")[2],
        state=fields[0].decode(),
        session=int(fields[3]),
        threads=int(fields[17]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        start_ticks=int(fields[19]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
    )


class KeptFiles:
    """Files opened once and re-read with ``pread``; at most ``limit`` are kept open at a time
    (a fork bomb must not cost the executor hundreds of descriptors), the rest are opened for
    each read. Used by one thread."""

    def __init__(self, limit: int = 32) -> None:
        self._limit = limit
        self._fds: dict[str, int] = {}

    def read(self, path: str) -> bytes:
        """The whole content now; raises ``OSError`` (ESRCH, ENOENT...) when it cannot be read."""
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if len(self._fds) < self._limit:
                self._fds[path] = fd
            else:
                try:
                    return read_all(fd)
                finally:
                    os.close(fd)
        try:
            return read_all(fd)
        except OSError:
            self.forget(path)
            raise

    def forget(self, path: str) -> None:
        """Close the kept descriptor of ``path`` (its process has gone)."""
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def forget_under(self, prefix: str) -> None:
        """Close every kept descriptor whose path starts with ``prefix``."""
        for path in [p for p in self._fds if p.startswith(prefix)]:
            self.forget(path)

    def close(self) -> None:
        """Close everything kept; later reads open and close their file each time."""
        self._limit = 0
        for path in list(self._fds):
            self.forget(path)


def read_all(fd: int) -> bytes:
    """The whole of an open file (from offset 0) in as few reads as it takes."""
    data = os.pread(fd, _CHUNK, 0)
    if len(data) < _CHUNK:
        return data
    parts = [data]
    while len(data) == _CHUNK:  # a long children list or cgroup.procs: rare
        data = os.pread(fd, _CHUNK, sum(len(p) for p in parts))
        parts.append(data)
    return b"".join(parts)


def children(files: KeptFiles, pid: int, threads: int) -> set[int]:
    """The children of ``pid``: the kernel keeps one list per thread (``task/<tid>/children``).

    A single-threaded process needs one read; otherwise the thread list is read first.
    """
    tids = [pid]
    if threads > 1:
        with contextlib.suppress(OSError):
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit()]
    found: set[int] = set()
    for tid in tids:
        try:
            found.update(int(w) for w in files.read(f"/proc/{pid}/task/{tid}/children").split())
        except (OSError, ValueError):
            continue
    return found


def private_rss(files: KeptFiles, pid: int) -> int | None:
    """Resident anonymous and shared-memory (tmpfs, ``shm``) bytes of ``pid``: the part of its
    RSS that grows when it allocates. File-backed pages (its libraries, mapped files) are left
    out: a forked child faults in the libraries it shares with its parent, which adds to its
    RSS but hardly to the tree's PSS. None when unreadable."""
    try:
        raw = files.read(f"/proc/{pid}/status")
    except OSError:
        return None
    total = 0
    for key in (b"\nRssAnon:", b"\nRssShmem:"):
        at = raw.find(key)
        if at < 0:
            return None
        total += int(raw[at + len(key):raw.index(b"kB", at)]) * 1024
    return total


def session_members(sid: int) -> set[int]:
    """Every process of session ``sid``: one pass over ``/proc``, done once per run at most
    (when the main process has exited without a cgroup, to find what it left behind)."""
    found: set[int] = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(name)) == sid:
                    found.add(int(name))
    return found
