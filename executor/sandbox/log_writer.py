"""A run's log pieces kept in order on a thread of their own, behind the output reader.

In an output flood the run's one reader thread is the bottleneck: per MiB of 1 KiB lines it
reads the pipe, masks and cuts (0.5-0.6 ms of its CPU), then counted the lines (0.2-0.3 ms),
added them to the memory tail and wrote that MiB into the task log (0.3-0.4 ms into page-cache
pages a deleted file just freed, several times that into fresh ones). An ``OrderedHandOff``
applies each read's lines (the count, the memory tail, the file write: ``RunLog``) on a second
thread while the reader goes on with the next read: ``os.write`` runs without the GIL, and
the count runs while the reader waits in its ``readv`` (also without the GIL), so both leave
the reader's path (session 16 moved the write, session 17 the count and the tail:
performance-log.md). Every piece, the sandbox's notes too, goes the same way, so the memory
and the file keep the order they were given in.

A hand-over costs a wake-up, more than a small piece's work: a piece under ``HANDOFF_BYTES``
while nothing is in flight (a quiet run's lines, the sandbox's notes) is still applied on the
caller's thread, and a thread is taken (``spare_threads``) only for large ones, until the
queue is empty (a quiet stretch of the run holds none; ``drain`` waits for what was given
before it). At most ``MAX_IN_FLIGHT`` bytes wait (a piece is in the run's memory tail only once
applied, so what waits is memory on top); beyond that the caller waits, as a slow disk made it
wait before. An ``apply``
that fails (a full disk) is raised to the caller at its next piece (the output reader then ends
as it did when its own write failed), and later pieces are dropped; ``drain`` waits for what was
handed over and ``close`` logs such a failure instead (it runs as the result is made, which a
full disk must not stop).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable

from loguru import logger

from executor.supervision.spare_threads import SPARES, Job

HANDOFF_BYTES = 128 << 10
"""Smaller pieces are applied on the caller's thread while nothing is in flight."""
IDLE_S = 0.5
"""A thread with nothing to apply for this long ends (the next large piece takes another)."""
MAX_IN_FLIGHT = 1 << 20
"""Bytes handed over and not yet applied past which the caller waits: one 1 MiB read is kept
while the reader masks the next (the pieces in flight are not in the memory tail yet, so each
MiB allowed here is a MiB more of RSS in a flood: 2 MiB read 7.7-8.6 MB of growth while a
flood was read, against 5.3-6.3 with the writes alone in flight)."""


class OrderedHandOff:
    """Applies byte pieces (``apply``) in the order given, the large ones on a thread of its own."""

    def __init__(self, apply: Callable[[bytes], None], name: str) -> None:
        self._apply = apply
        self.name = name
        """For the thread's name and the log (the task log's name once it has one)."""
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[bytes] = deque()
        self._in_flight = 0
        """Bytes handed over and not yet applied (queued or being applied)."""
        self._handed = 0
        self._applied = 0
        """Pieces handed over, and of those the ones applied (or dropped after a failure)."""
        self._error: OSError | None = None
        self._closing = False
        self._job: Job | None = None

    def put(self, data: bytes) -> None:
        """Apply ``data`` after everything given before; raises a failed earlier piece's error."""
        if not data:
            return
        with self._cond:
            self._raise_error()
            direct = not self._in_flight and len(data) < HANDOFF_BYTES
            if not direct:
                self._hand_over(data)
        if direct:
            self._apply(data)  # nothing in flight: nothing given before is still waiting

    def drain(self) -> None:
        """Wait until every piece handed over before this call is applied (or dropped)."""
        with self._cond:
            target = self._handed
            while self._applied < target:
                self._cond.wait()

    def close(self) -> None:
        """Wait until every piece handed over is applied (or dropped after a failure), and say
        so in the log when one failed; later pieces are applied on the caller's thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            job = self._job
        if job is not None:
            job.join()  # as long as the disk takes: a write on the caller's thread waited as long
        if self._error is not None:
            logger.warning("task log {}: writing failed ({}); the file is incomplete", self.name,
                           self._error.strerror or self._error)

    def _hand_over(self, data: bytes) -> None:
        """Queue ``data`` for the thread, waiting while too much is in flight (the lock is held)."""
        while self._in_flight >= MAX_IN_FLIGHT and self._error is None:
            self._cond.wait()
        self._raise_error()
        self._queue.append(data)
        self._in_flight += len(data)
        self._handed += 1
        if self._job is None:  # none runs: one that waited IDLE_S for more has ended
            self._job = SPARES.start(self._run, f"sandbox-log-{self.name}", "sandbox-log")
        else:
            self._cond.notify_all()

    def _raise_error(self) -> None:
        """Raise the failure of an earlier piece (the lock is held)."""
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        """The thread's job: apply the queued pieces in order, and end once none is left (the
        next hand-over starts another: an idle run holds no thread)."""
        while True:
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(IDLE_S)
                if not self._queue:
                    self._job = None
                    return
                data = self._queue[0]
            try:
                if self._error is None:
                    self._apply(data)
            except Exception as exc:  # whatever it is, the caller must hear of it, never wait on
                with self._cond:
                    self._error = exc if isinstance(exc, OSError) else OSError(f"task log: {exc!r}")
            with self._cond:
                self._queue.popleft()
                self._in_flight -= len(data)
                self._applied += 1
                self._cond.notify_all()  # a caller waiting for room, or for a drain
            del data  # no piece outlives its work on this thread


def write_all(fd: int, data: bytes) -> None:
    """``data`` into ``fd`` however many writes it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
