"""The monitor's sleep between samples, cut short by the main process's exit or a stop request.

A finished recipe must be noticed at once, not at the next sample: the run's result (and the
next task of a single worker) waits on it. A pidfd (``pidfd_open``) becomes readable when the
process exits, without reaping it, so the exit status stays for ``Popen`` to collect and
nothing else can take it. A stop request writes to an eventfd. Both are polled with the
sampling interval as the timeout. Where the kernel has no pidfds (before Linux 5.3) the exit
is noticed at the next sample, as ``exit_watched`` says.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import threading


class ExitWaiter:
    """Sleeps until ``pid`` exits, ``wake()`` is called or the timeout passes; one waiting thread."""

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

    @property
    def exit_watched(self) -> bool:
        """True when the exit wakes the waiter; False when only sampling notices it."""
        return self._pidfd is not None

    def wait(self, timeout_s: float) -> None:
        """Sleep up to ``timeout_s``; returns early on the exit (once) or on a ``wake()``."""
        ready = self._poll.poll(max(0, math.ceil(timeout_s * 1000)))
        for fd, _ in ready:
            if fd == self._wake_fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            elif fd == self._pidfd:
                self.exited = True
                self._poll.unregister(fd)  # readable from now on: polling it again would spin

    def wake(self) -> None:
        """Cut the current (or next) wait short; callable from any thread, also after ``close``."""
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_write(self._wake_fd, 1)

    def close(self) -> None:
        """Release the descriptors."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_fd)
            if self._pidfd is not None:
                os.close(self._pidfd)
