"""A task log file's large writes, done in order on a thread of their own behind the output reader.

In an output flood the run's one reader thread is the bottleneck: per MiB of 1 KiB lines it
reads the pipe, masks, cuts and counts (0.6-0.8 ms of its CPU) and then wrote that MiB into the
task log (0.3-0.4 ms into page-cache pages a deleted file just freed, several times that into
fresh ones). ``os.write`` runs without the GIL, so a second thread that writes one read while
the reader goes on with the next puts the write on the machine's other core: the bytes, their
order and the file's cap are the same, only the reader's wait for the kernel goes (its thread
1.1-1.3 ms per MiB where it was 1.4-1.6; the process pays 0.15-0.25 more for the GIL's
hand-overs around each write: a gain where a core is free, performance-log.md, session 16).

A hand-over costs a wake-up, more than a small ``os.write``: a write under ``HANDOFF_BYTES``
while nothing is in flight (a quiet run's lines, the sandbox's notes) is still done on the
caller's thread, and a thread is taken (``spare_threads``) only for large ones, until the
queue is empty (a quiet stretch of the run holds none; ``close`` waits for the last). At
most ``MAX_IN_FLIGHT`` bytes wait (the pieces are the ones the run's memory tail holds anyway);
beyond that the caller waits, as a slow disk made it wait before. A write that fails is raised
to the caller at its next write (the output reader then ends as it did when its own write
failed), and later pieces are dropped; ``close`` waits for what was handed over and logs such a
failure instead (it runs as the result is made, which a full disk must not stop).

One caller at a time (the run log's lock); ``close`` once, from that caller.
"""

from __future__ import annotations

import os
import threading
from collections import deque

from loguru import logger

from executor.supervision.spare_threads import SPARES, Job

HANDOFF_BYTES = 128 << 10
"""Smaller writes go straight to the file while nothing is in flight."""
IDLE_S = 0.5
"""A writer thread with nothing to write for this long ends (the next large write takes another)."""
MAX_IN_FLIGHT = 2 << 20
"""Bytes handed over and not yet written past which the caller waits (two 1 MiB reads)."""


class BackgroundWriter:
    """Writes byte pieces to ``fd`` in the order given, the large ones on a thread of its own."""

    def __init__(self, fd: int, name: str) -> None:
        self._fd = fd
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[bytes] = deque()
        self._in_flight = 0
        """Bytes handed over and not yet written (queued or being written)."""
        self._error: OSError | None = None
        self._closing = False
        self._job: Job | None = None

    def write(self, data: bytes) -> None:
        """Write ``data`` after everything given before; raises a failed earlier write's error."""
        if not data:
            return
        with self._cond:
            self._raise_error()
            if not self._in_flight and len(data) < HANDOFF_BYTES:
                direct = True
            else:
                direct = False
                self._hand_over(data)
        if direct:
            write_all(self._fd, data)  # nothing in flight and one caller: the order holds

    def close(self) -> None:
        """Wait until every piece handed over is written (or dropped after a failure); the file
        descriptor stays the caller's."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            job = self._job
        if job is not None:
            job.join()  # as long as the disk takes: a write on the caller's thread waited as long
        if self._error is not None:
            logger.warning("task log {}: writing failed ({}); the file is incomplete", self._name,
                           self._error.strerror or self._error)

    def _hand_over(self, data: bytes) -> None:
        """Queue ``data`` for the thread, waiting while too much is in flight (the lock is held)."""
        while self._in_flight >= MAX_IN_FLIGHT and self._error is None:
            self._cond.wait()
        self._raise_error()
        self._queue.append(data)
        self._in_flight += len(data)
        if self._job is None:  # none runs: one that waited IDLE_S for more has ended
            self._job = SPARES.start(self._run, f"sandbox-log-{self._name}", "sandbox-log")
        else:
            self._cond.notify_all()

    def _raise_error(self) -> None:
        """Raise the failure of an earlier write (the lock is held)."""
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        """The thread's job: write the queued pieces in order, and end once none is left (the
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
                    write_all(self._fd, data)
            except Exception as exc:  # whatever it is, the caller must hear of it, never wait on
                with self._cond:
                    self._error = exc if isinstance(exc, OSError) else OSError(f"task log write: {exc!r}")
            with self._cond:
                self._queue.popleft()
                self._in_flight -= len(data)
                self._cond.notify_all()  # a caller waiting for room
            del data  # no piece outlives its write on this thread


def write_all(fd: int, data: bytes) -> None:
    """``data`` into ``fd`` however many writes it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
