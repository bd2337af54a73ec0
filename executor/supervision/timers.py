"""Delayed self-messages for actors: one scheduler thread for the whole process.

Actors must not sleep in a handler (a stop would wait); instead they ask their ``Timers`` to
``tell`` them a message later. Every actor's ``Timers`` is a group of handles on one shared
``Scheduler``, whose single thread runs only while something is scheduled, so a process with
hundreds of actors has one timer thread, and one with no actor left has none. A callback only
puts a message into a mailbox, so one thread serves them all without delaying any.

Delays of ``COARSE_FROM_S`` or more (presence, liveness looks, KILL polls, retries) end on a
common grid of ``GRID_S``: never early, at most that much late, and the periodic timers of every
actor fall due together, so an idle executor's timer thread wakes once
per grid tick that has work instead of once per timer (idle CPU). Shorter delays keep their
precision (a 1 s progress report in a test races a 1 s recipe).

Periodic work (liveness looks, KILL polls) goes further with
``tell_on_tick``: it falls due on the next tick of a process-wide clock of its period (the
multiples of the period on the monotonic clock), so every actor's message of one period is due
at the same moment, whenever each actor started: the timer thread and each strand wake once per
period, not once per actor. A grid alone keeps each timer's own phase.

Nothing beats through the scheduler to prove it runs: ``/healthz`` reads ``overdue_s`` (how
late its earliest entry is), and the thread is stuck once that passes ``2 x LATE_ALLOWANCE_S``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka
from loguru import logger

from executor.supervision.threadnames import name_this_thread

THREAD_NAME = "timers"
GRID_S = 0.25
"""The grid that delays of ``COARSE_FROM_S`` or more are rounded up to."""
COARSE_FROM_S = 2.0
TICK_GAP = 0.25
"""A tick is due at least this share of its period from now: a timer armed just after a tick
(a beat re-arming itself) falls due on the next one, one period later; one armed at any other
moment (an actor's first beat) waits 0.25 to 1.25 periods."""
LATE_ALLOWANCE_S = 5.0
"""The timer thread's liveness allowance (``HealthState``: stale past twice this): a callback
only puts a message in a mailbox, so an entry 10 s late means the thread is stuck; less would
fail ``/healthz`` on a host so loaded that a runnable thread waits seconds for a core (the
strands' allowances are 5 s and more too)."""


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


def due_after(delay_s: float) -> float:
    """The monotonic time ``delay_s`` from now; for a delay of ``COARSE_FROM_S`` or more, rounded
    up to the next multiple of ``GRID_S`` (see the module doc)."""
    delay_s = max(0.0, delay_s)
    due = time.monotonic() + delay_s
    return math.ceil(due / GRID_S) * GRID_S if delay_s >= COARSE_FROM_S else due


def due_on_tick(period_s: float) -> float:
    """The monotonic time of the next multiple of ``period_s`` that is at least
    ``TICK_GAP * period_s`` from now (see the module doc)."""
    period_s = max(period_s, 1e-3)
    earliest = time.monotonic() + TICK_GAP * period_s
    return math.ceil(earliest / period_s) * period_s


class Scheduler:
    """Runs callbacks after a delay on one thread, started on demand and ended when idle."""

    def __init__(self, name: str = THREAD_NAME) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._live = 0
        self._thread: threading.Thread | None = None

    def call_after(self, delay_s: float, fn: Callable[[], None]) -> _Entry:
        """Run ``fn`` on the scheduler's thread in ``delay_s`` seconds; ``cancel`` forgets it."""
        return self.call_at(due_after(delay_s), fn)

    def call_at(self, due: float, fn: Callable[[], None]) -> _Entry:
        """Run ``fn`` on the scheduler's thread at monotonic time ``due``."""
        entry = _Entry(due, next(self._seq), fn)
        with self._cond:
            heapq.heappush(self._heap, entry)
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                # Only an entry due before every other one changes how long the thread sleeps:
                # an actor re-arming its periodic timer does not wake it (idle CPU).
                self._cond.notify()
        return entry

    def cancel(self, entries: list[_Entry]) -> None:
        """Forget ``entries``; with nothing left to run, the thread ends. The thread is woken
        only when the entry it sleeps until went (an actor's end cancels timers due long after
        the next one: every Task's end woke it for nothing)."""
        with self._cond:
            first = self._heap[0] if self._heap else None
            for entry in entries:
                if not entry.cancelled:
                    entry.cancelled = True
                    self._live -= 1
            if self._live == 0 or len(self._heap) > 2 * self._live + 64:
                self._heap = [e for e in self._heap if not e.cancelled]
                heapq.heapify(self._heap)
            if first is not None and first.cancelled:
                self._cond.notify()

    def overdue_s(self) -> float:
        """How late the earliest scheduled entry is now (0 when none is due yet, or none is
        scheduled): the thread's liveness, read by ``/healthz`` from any thread."""
        with self._cond:
            live = [e.due for e in self._heap[:1] if not e.cancelled]
            if not live and self._live:
                live = [min(e.due for e in self._heap if not e.cancelled)]
        return max(0.0, time.monotonic() - live[0]) if live else 0.0

    def _next(self) -> _Entry | None:
        """The next due entry, waiting for it; None when nothing is scheduled (the thread ends)."""
        with self._cond:
            while True:
                while self._heap and self._heap[0].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._thread = None
                    return None
                wait = self._heap[0].due - time.monotonic()
                if wait <= 0:
                    entry = heapq.heappop(self._heap)
                    entry.cancelled = True
                    self._live -= 1
                    return entry
                self._cond.wait(wait)

    def _run(self) -> None:
        name_this_thread(self._name)
        while (entry := self._next()) is not None:
            try:
                entry.fn()
            except Exception:  # a bad callback must not stop every other actor's timers
                logger.exception("timer callback failed")


SCHEDULER = Scheduler()
"""The process's one scheduler."""


class Timers:
    """One actor's scheduled messages on the shared scheduler, cancelled one by one or as a whole."""

    def __init__(self, scheduler: Scheduler = SCHEDULER) -> None:
        self._scheduler = scheduler
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._closed = False

    def tell_after(self, delay_s: float, ref: pykka.ActorRef[Any], message: Any) -> int:
        """Tell ``message`` to ``ref`` in ``delay_s`` seconds (dropped if ``ref`` died); returns a
        handle for ``cancel``, or -1 once ``cancel_all`` has run."""
        return self.tell_at(due_after(delay_s), ref, message)

    def tell_on_tick(self, period_s: float, ref: pykka.ActorRef[Any], message: Any) -> int:
        """Tell ``message`` to ``ref`` on the next tick of period ``period_s`` (``due_on_tick``):
        for periodic work, which then falls due together with every other actor's."""
        return self.tell_at(due_on_tick(period_s), ref, message)

    def tell_at(self, due: float, ref: pykka.ActorRef[Any], message: Any) -> int:
        """Tell ``message`` to ``ref`` at monotonic time ``due`` (for a caller that keeps it)."""
        def send() -> None:
            # Runs on the scheduler's thread, after this method released the lock, so
            # ``handle`` is bound even for a delay of zero.
            with self._lock:
                self._entries.pop(handle, None)
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

        with self._lock:
            if self._closed:
                return -1
            entry = self._scheduler.call_at(due, send)
            handle = entry.seq
            self._entries[handle] = entry
        return handle

    def cancel(self, handle: int) -> None:
        """Forget one scheduled message."""
        with self._lock:
            entry = self._entries.pop(handle, None)
        if entry is not None:
            self._scheduler.cancel([entry])

    def cancel_all(self) -> None:
        """Forget every scheduled message and refuse new ones (the actor has ended)."""
        with self._lock:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
        self._scheduler.cancel(entries)
