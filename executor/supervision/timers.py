"""Delayed self-messages for actors: one scheduler thread per owner, cancelled as a whole.

Actors must not sleep in a handler (a stop would wait); instead they ask ``Timers`` to
``tell`` them a message later. ``cancel_all`` at stop joins the thread, so a stopped actor
leaves no thread behind.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka


class Timers:
    """Schedules ``ref.tell(message)`` (or any callable) after a delay."""

    def __init__(self, name: str = "timers") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def tell_after(self, delay_s: float, ref: pykka.ActorRef[Any], message: Any) -> int:
        """Tell ``message`` to ``ref`` in ``delay_s`` seconds (dropped if ``ref`` died)."""

        def send() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

        return self.call_after(delay_s, send)

    def call_after(self, delay_s: float, fn: Callable[[], None]) -> int:
        """Run ``fn`` on the timer thread in ``delay_s`` seconds; returns a handle for ``cancel``."""
        with self._cond:
            if self._closed:
                return -1
            handle = next(self._seq)
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), handle, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
            return handle

    def cancel(self, handle: int) -> None:
        """Forget one scheduled call."""
        with self._cond:
            self._cancelled.add(handle)

    def cancel_all(self, join_timeout_s: float = 2.0) -> None:
        """Drop every scheduled call, stop the thread and wait for it."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                _, handle, fn = heapq.heappop(self._heap)
                if handle in self._cancelled:
                    self._cancelled.discard(handle)
                    continue
            fn()
