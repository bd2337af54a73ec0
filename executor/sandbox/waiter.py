"""The run's one wait: the monitor's sleep between samples, which also reads the output as it
comes, cut short by the main process's exit or a stop request.

A finished recipe must be noticed at once, not at the next sample: the run's result (and the
next task of a single worker) waits on it. A pidfd (``pidfd_open``) becomes readable when the
process exits, without reaping it, so the exit status stays for ``Popen`` to collect and
nothing else can take it. A stop request writes to an eventfd. The output pipe, once the run
reads it (``read_output``: a held run's only once its input and secrets were given), is polled
with them, and a chunk is read whenever it has one: the run needs no reader thread, and so no
wake-up and hand-over between two threads per chunk and at the end. All are polled with the
sampling interval as the timeout; a flood delays a due sample by one read at most (each read
is followed by a look at the clock), and output past the limit ends the sleep at once. Where
the kernel has no pidfds (before Linux 5.3) the exit is noticed at the next sample, as
``exit_watched`` says. While the run log's hand-off is full (a stalled disk), the pipe is left
unpolled and the hand-off's room is polled instead (``OutputReader.room``): the recipe waits on
its full pipe, never the run's thread on the log.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import threading
import time

from executor.sandbox.streams import OutputReader

_PIPE_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR


class ExitWaiter:
    """Sleeps until ``pid`` exits, ``wake()`` is called or the timeout passes, reading the
    output meanwhile; one waiting thread."""

    def __init__(self, pid: int) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._poll = select.poll()
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._poll.register(self._wake_fd, select.POLLIN)
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
            self._poll.register(self._pidfd, select.POLLIN)
        except OSError:  # no pidfds here (or the pid is not ours): sample for the exit instead
            self._pidfd = None
        self.exited = False
        self._woken = False
        """``wake`` was called (a reader handed over wakes the poll without ending the sleep)."""
        self._asked: OutputReader | None = None
        """A reader handed over by ``read_output``, for the waiting thread to take up."""
        self._reader: OutputReader | None = None
        self._pipe_fd: int | None = None
        self._room_fd: int | None = None
        """The hand-off's room, polled instead of the pipe while it is full."""

    @property
    def exit_watched(self) -> bool:
        """True when the exit wakes the waiter; False when only sampling notices it."""
        return self._pidfd is not None

    def read_output(self, reader: OutputReader) -> None:
        """From any thread: read ``reader``'s pipe in the waits from now on (its first byte is
        read on the waiting thread, after this call)."""
        with self._lock:
            if self._closed:
                return
            self._asked = reader
            with contextlib.suppress(BlockingIOError):
                os.eventfd_write(self._wake_fd, 1)

    def wait(self, timeout_s: float) -> None:
        """Sleep up to ``timeout_s``, reading output as it comes; returns early on the exit
        (once), on a ``wake()`` or once the output passed its limit."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._take_reader()
            self._follow_room()
            left = deadline - time.monotonic()
            ready = self._poll.poll(max(0, math.ceil(left * 1000)))
            if not ready:
                return
            if self._handle(ready) or time.monotonic() >= deadline:
                return

    def _handle(self, ready: list[tuple[int, int]]) -> bool:
        """What one poll found; True when the sleep ends (an exit, a wake, the output limit)."""
        over = False
        ends = False
        for fd, _ in ready:
            if fd == self._pipe_fd and self._room_fd is None:
                over = self._read()
            elif fd == self._room_fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(fd)  # room again: ``_follow_room`` polls the pipe again
            elif fd == self._wake_fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
                with self._lock:  # a ``wake`` between the read and the look is seen now or next
                    ends, self._woken = ends or self._woken, False
            elif fd == self._pidfd:
                self.exited = True
                self._poll.unregister(fd)  # readable from now on: polling it again would spin
                ends = True
        return ends or over

    def _read(self) -> bool:
        """One chunk off the pipe (the next poll says whether more is there); True when this
        read took the output past its limit (the monitor should look now)."""
        reader = self._reader
        assert reader is not None and self._pipe_fd is not None
        was_over = reader.over_limit
        reader.read_once()
        if reader.ended:
            self._poll.unregister(self._pipe_fd)
            self._pipe_fd = None
        return reader.over_limit and not was_over

    def _follow_room(self) -> None:
        """Poll the pipe while the reader's sink has room, its room while it has none."""
        reader = self._reader
        if reader is None or self._pipe_fd is None:
            return
        full = reader.room_blocked()
        if full and self._room_fd is None:
            assert reader.room is not None
            self._room_fd = reader.room.room_fd
            self._poll.unregister(self._pipe_fd)  # not ``modify``: a hung-up pipe would spin
            self._poll.register(self._room_fd, select.POLLIN)
        elif not full and self._room_fd is not None:
            self._poll.unregister(self._room_fd)
            self._room_fd = None
            self._poll.register(self._pipe_fd, _PIPE_EVENTS)

    def _take_reader(self) -> None:
        """Start polling the pipe of a reader handed over by ``read_output``."""
        if self._asked is None:
            return
        with self._lock:
            reader, self._asked = self._asked, None
        if reader is not None and self._reader is None:
            self._reader = reader
            if not reader.ended:
                self._pipe_fd = reader.open()
                self._poll.register(self._pipe_fd, _PIPE_EVENTS)

    def wake(self) -> None:
        """Cut the current (or next) wait short; callable from any thread, also after ``close``."""
        with self._lock:
            if not self._closed:
                self._woken = True
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_write(self._wake_fd, 1)

    def close(self) -> None:
        """Release the descriptors (the pipe is the reader's: whoever finishes the run drains it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._asked = None
            os.close(self._wake_fd)
            if self._pidfd is not None:
                os.close(self._pidfd)
