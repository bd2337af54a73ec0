"""The main thread's wake-up: an event that a signal delivered to any thread also sets.

CPython runs a signal's Python handler only on the main thread, and only when that thread runs
bytecode. The kernel delivers a process's SIGTERM to any thread that does not block it (the
main thread often, not always: a busy host showed it). The main thread, asleep in a lock's wait
(``threading.Event.wait``), then heard of the signal only when its wait ended, up to
``service.MAIN_WAIT_S`` later: 60 s, after which systemd or Kubernetes would have sent SIGKILL.
Here the main thread sleeps in ``poll`` on a pipe that the setters write to and that CPython's
own C-level handler writes to as well (``signal.set_wakeup_fd``), on whichever thread the signal
came to: the main thread wakes at once and runs the handler.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal


class MainWake:
    """``set`` from any thread (or a signal, once ``catch_signals`` ran); ``wait`` on the main
    thread. A ``set`` between two waits is kept for the next one."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._signals = False

    def catch_signals(self) -> None:
        """Signals wake ``wait`` too (main thread only, as ``signal.signal``)."""
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._signals = True

    def set(self) -> None:
        """Wake the next (or the current) ``wait``; nothing once closed."""
        fd = self._write
        if fd < 0:
            return
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(fd, b"\0")

    def wait(self, timeout_s: float) -> None:
        """Sleep until a ``set``, a signal or ``timeout_s``; the caller then looks at what changed."""
        if self._read < 0:
            return
        poller = select.poll()  # not ``select.select``: no descriptor number is too high for it
        poller.register(self._read, select.POLLIN)
        if poller.poll(timeout_s * 1000):
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass

    def close(self) -> None:
        """Give the descriptors back (and the signals' wake-up fd, if it was this one's)."""
        if self._signals:
            with contextlib.suppress(ValueError):  # not the main thread: the process ends anyway
                signal.set_wakeup_fd(-1)
            self._signals = False
        fds, self._read, self._write = (self._read, self._write), -1, -1  # before the close: a
        for fd in fds:  # signal's ``set`` that runs in between (on this thread) writes nothing
            if fd >= 0:
                os.close(fd)
