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

Every piece is applied on that thread, never on the caller's: the caller is the run's one
thread (the stop, the timeout, the SIGKILL and the samples wait on it), and a stalled disk must
not hold it, not even for a small piece. ``put`` never waits and never raises: the back-pressure
is the reader's (``wants_room``: while two reads' worth waits, the run's thread stops
reading the pipe and polls ``room_fd`` instead; the recipe blocks on its full pipe). A piece
is in the run's memory tail only once applied, so what waits is memory on top. ``apply``
handles its own failures (``RunLog``: a full disk stops only the file); anything it raises
anyway is logged once and the piece counted as applied, so no caller ever waits on a piece
that failed. ``drain`` and ``close`` wait ``SETTLE_S`` at most; ``close`` leaves what it was to
do after the pieces (the file's close) to the thread when the disk is slower than that.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable

from loguru import logger

from executor.supervision.spare_threads import SPARES, Job

IDLE_S = 0.5
"""A thread with nothing to apply for this long ends (the next piece takes another)."""
EAGER_BYTES = 64 << 10
"""A piece that brings what waits to this many bytes wakes the thread at once (a flood's reads
always do). A smaller one waits for the thread's next look, ``IDLE_S`` at most, or for a
``drain`` or a ``close``: a trivial task's few pieces (a note at the spare's adoption, its
output, its summary) were each a wake-up of the thread, and a quiet recipe's lines one each;
the memory tail and the file may now lag by ``IDLE_S`` for such pieces, which only a progress
report (every few seconds) or a human reading the file sees."""
MAX_IN_FLIGHT = 1 << 20
"""Bytes handed over and not yet applied past which the reader waits for room (``wants_room``)
before its next read (beyond ``ROOM_SLACK``): one read of up to 1 MiB is applied while the
reader reads and masks the next, and the reader then waits until the first is applied, so at
most two reads wait, as before when a reader held its next read while it waited in ``put``
(the pieces in flight are not in the memory tail yet, so each MiB allowed here is a MiB more
of RSS in a flood: 2 MiB read 7.7-8.6 MB of growth while a flood was read, against 5.3-6.3
with the writes alone in flight)."""
ROOM_SLACK = 64 << 10
"""A read's piece may pass 1 MiB by the line it completes (held from the read before): one
such piece alone still leaves room for the next read."""
SETTLE_S = 12.0
"""How long ``drain`` and ``close`` wait for the pieces given before them (the output's end,
``READ_END_S``, plus the default kill grace): a disk stalled longer does not hold the result."""


class OrderedHandOff:
    """Applies byte pieces (``apply``) in the order given, on a thread of its own."""

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
        """Pieces handed over, and of those the ones applied (or failed)."""
        self._failed = False
        self._closing = False
        self._then: Callable[[], None] | None = None
        """What ``close`` left for the thread to do once the pieces are applied."""
        self._job: Job | None = None
        self._room_fd: int | None = None
        self._room_wanted = False
        self._stalled = False
        """A wait gave up on the pieces (a stalled disk): later waits do not wait again."""

    def put(self, data: bytes) -> None:
        """Apply ``data`` after everything given before, on the hand-off's thread; never waits
        (the reader asks ``wants_room`` before reading) and never raises."""
        if not data:
            return
        with self._cond:
            self._queue.append(data)
            self._in_flight += len(data)
            self._handed += 1
            if self._job is None:  # none runs: one that waited IDLE_S for more has ended
                self._job = SPARES.start(self._run, f"sandbox-log-{self.name}", "sandbox-log")
            elif self._in_flight >= EAGER_BYTES:
                self._cond.notify_all()

    def wants_room(self) -> bool:
        """True while more than ``MAX_IN_FLIGHT`` (and ``ROOM_SLACK``) waits: the reader should
        not read until ``room_fd`` is readable (signalled once the pieces in flight fit again)."""
        with self._cond:
            if self._has_room() or self._closing:  # closing: the output was read to its end
                return False
            self._room_eventfd()  # before the flag: the thread signals it as soon as room comes
            self._room_wanted = True
            return True

    @property
    def room_fd(self) -> int:
        """An eventfd, readable once room came back after ``wants_room`` said there was none
        (the reader reads it to clear it); made on first use, closed by ``close``."""
        with self._cond:
            return self._room_eventfd()

    def _room_eventfd(self) -> int:
        """The room's eventfd, made now if it was not (the lock is held)."""
        if self._room_fd is None:
            self._room_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        return self._room_fd

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait up to ``timeout_s`` (``SETTLE_S``) until every piece handed over before this call
        is applied; True when they are."""
        with self._cond:
            if self._applied < self._handed:
                self._cond.notify_all()  # small pieces wait for a look: this is one
            return self._wait_applied(self._handed, timeout_s)

    def close(self, then: Callable[[], None] = lambda: None, timeout_s: float | None = None) -> bool:
        """Wait up to ``timeout_s`` (``SETTLE_S``) until every piece handed over is applied, then
        call ``then`` (here, or on the hand-off's thread once they are when the disk is slower);
        True when it was called here. Later pieces still go by the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            done = self._wait_applied(self._handed, timeout_s)
            if not done:
                self._then = then
                logger.warning("task log {}: the disk is slow; the file is closed once written", self.name)
            room_fd, self._room_fd = self._room_fd, None
        if room_fd is not None:
            os.close(room_fd)  # the reader is over: the run's output was read before this
        if done:
            then()
        return done

    def _wait_applied(self, target: int, timeout_s: float | None) -> bool:
        """Wait until ``target`` pieces are applied (the lock is held); not at all once an
        earlier wait gave up and the thread is still stuck on the same pieces."""
        timeout = 0.0 if self._stalled else SETTLE_S if timeout_s is None else timeout_s
        done = self._cond.wait_for(lambda: self._applied >= target, timeout)
        self._stalled = not done
        return done

    def _run(self) -> None:
        """The thread's job: apply the queued pieces in order, and end once none is left (the
        next hand-over starts another: an idle run holds no thread)."""
        while True:
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(IDLE_S)
                if not self._queue:
                    self._job = None
                    self._stalled = False
                    then, self._then = self._then, None
                    break
                data = self._queue[0]
            self._apply_one(data)
            with self._cond:
                self._queue.popleft()
                self._in_flight -= len(data)
                self._applied += 1
                self._cond.notify_all()  # a drain or a close
                self._signal_room()
            del data  # no piece outlives its work on this thread
        if then is not None:
            self._apply_one(b"", then)

    def _apply_one(self, data: bytes, action: Callable[[], None] | None = None) -> None:
        """``apply(data)`` (or ``action``); whatever it raises is logged once, never passed on
        (the piece counts as applied: no caller waits on it)."""
        try:
            if action is not None:
                action()
            else:
                self._apply(data)
        except BaseException:
            if not self._failed:
                self._failed = True
                logger.exception("task log {}: a piece could not be kept", self.name)

    def _has_room(self) -> bool:
        """Whether the reader may read again (the lock is held)."""
        return self._in_flight <= MAX_IN_FLIGHT + ROOM_SLACK

    def _signal_room(self) -> None:
        """Tell a reader waiting for room that there is some (the lock is held)."""
        if self._room_wanted and self._has_room():
            self._room_wanted = False
            if self._room_fd is not None:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_write(self._room_fd, 1)


def write_all(fd: int, data: bytes) -> None:
    """``data`` into ``fd`` however many writes it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
