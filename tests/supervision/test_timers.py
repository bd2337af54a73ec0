"""Delayed messages: one timer thread for the whole process, none once nothing is scheduled."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from executor.supervision import start_root
from executor.supervision.timers import (
    COARSE_FROM_S,
    GRID_S,
    THREAD_NAME,
    TICK_GAP,
    Scheduler,
    due_after,
    due_on_tick,
)

from .probe import Probe, Worker, child_ref, policy, wait_for, worker_spec


@dataclass(frozen=True)
class Ping:
    label: str


class TimedWorker(Worker):
    """Schedules a far message at start (so a timer is pending for its whole life), and on
    request a message it cancels and one it keeps."""

    def setup(self) -> None:
        super().setup()
        self.tell_self_after(600, Ping("far"))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ping) and message.label == "schedule":
            dropped = self.tell_self_after(0.3, Ping("cancelled"))
            self.tell_self_after(0.6, Ping("kept"))
            self.timers.cancel(dropped)
            return None
        if isinstance(message, Ping):
            self.probe.record(self.ctx.name, self.ctx.incarnation, f"ping:{message.label}")
            return None
        return super().on_receive(message)


def timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def test_many_actors_share_one_timer_thread_and_leave_none_behind(probe: Probe) -> None:
    names = [f"w{i}" for i in range(40)]
    root = start_root("root", [worker_spec(n, probe, cls=TimedWorker) for n in names], policy())
    for name in names:
        probe.wait_starts(name, 1)
    assert len(timer_threads()) == 1  # 41 actors with pending timers
    root.stop(timeout=10)
    wait_for(lambda: not timer_threads(), what="the timer thread to end once nothing is scheduled")


def test_a_cancelled_message_never_arrives_and_the_others_do(probe: Probe) -> None:
    root = start_root("root", [worker_spec("w", probe, cls=TimedWorker)], policy())
    probe.wait_starts("w", 1)
    child_ref(root, "w").tell(Ping("schedule"))  # type: ignore[union-attr]
    probe.wait_event(lambda: ("w", 1, "ping:kept") in probe.events, "the kept message")
    assert ("w", 1, "ping:cancelled") not in probe.events  # due before the kept one
    root.stop(timeout=10)


def test_the_scheduler_runs_callbacks_in_due_order_and_survives_a_failing_one() -> None:
    scheduler = Scheduler(name="timers-under-test")
    ran: list[str] = []
    done = threading.Event()

    def failing() -> None:
        ran.append("failing")
        raise RuntimeError("a bad callback")

    def last() -> None:
        ran.append("last")
        done.set()

    scheduler.call_after(0.6, last)
    scheduler.call_after(0.2, failing)
    scheduler.call_after(0.0, lambda: ran.append("first"))
    cancelled = scheduler.call_after(0.4, lambda: ran.append("cancelled"))
    scheduler.cancel([cancelled])
    assert done.wait(10)
    assert ran == ["first", "failing", "last"]
    wait_for(lambda: not any(t.name == "timers-under-test" for t in threading.enumerate()),
             what="the idle scheduler's thread to end")


def test_delays_of_two_seconds_or_more_end_on_the_common_grid_never_early() -> None:
    for delay in (COARSE_FROM_S, 2.3, 5.0, 30.0):
        before = time.monotonic()
        due = due_after(delay)
        after = time.monotonic()
        assert before + delay <= due < after + delay + GRID_S
        assert due % GRID_S == 0  # timers of different actors fall due together
    before = time.monotonic()
    due = due_after(1.0)
    assert before + 1.0 <= due <= time.monotonic() + 1.0  # a short delay keeps its precision


def test_a_coarse_timer_never_runs_before_its_delay() -> None:
    scheduler = Scheduler(name="timers-coarse")
    ran = threading.Event()
    asked = time.monotonic()
    at: list[float] = []
    scheduler.call_after(COARSE_FROM_S, lambda: (at.append(time.monotonic()), ran.set()))
    assert ran.wait(10)
    assert at[0] >= asked + COARSE_FROM_S
    wait_for(lambda: not any(t.name == "timers-coarse" for t in threading.enumerate()),
             what="the idle scheduler's thread to end")


def test_periodic_timers_armed_at_different_moments_fall_due_on_one_tick() -> None:
    period = 0.4
    first = due_on_tick(period)
    time.sleep(0.05)  # another actor arms its beat a little later, in the same period
    second = due_on_tick(period)
    assert abs(first - second) < 1e-9 or abs(abs(first - second) - period) < 1e-9
    now = time.monotonic()
    due = due_on_tick(5.0)
    assert now + TICK_GAP * 5.0 <= due <= time.monotonic() + (1 + TICK_GAP) * 5.0
    assert abs(due / 5.0 - round(due / 5.0)) < 1e-9  # a multiple of the period: a common tick


def test_a_beat_that_rearms_just_after_its_tick_is_due_one_period_later() -> None:
    scheduler = Scheduler(name="timers-ticks")
    period = 0.5
    at: list[float] = []
    done = threading.Event()

    def beat() -> None:
        at.append(time.monotonic())
        if len(at) < 4:
            scheduler.call_at(due_on_tick(period), beat)
        else:
            done.set()

    scheduler.call_at(due_on_tick(period), beat)
    assert done.wait(10)
    ticks = [math.floor(t / period + 1e-9) for t in at]  # each fired on its tick, never early
    assert ticks == list(range(ticks[0], ticks[0] + 4))  # one beat per tick: no tick skipped or doubled
    wait_for(lambda: not any(t.name == "timers-ticks" for t in threading.enumerate()),
             what="the idle scheduler's thread to end")


class _CountingCondition(threading.Condition):
    """A condition that counts its ``notify`` calls: each one wakes the timer thread."""

    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


def test_cancelling_an_entry_due_after_the_next_one_does_not_wake_the_thread() -> None:
    """An actor's end cancels timers due long after the next one; the thread sleeps on."""
    scheduler = Scheduler(name="timers-cancel-test")
    condition = _CountingCondition()
    scheduler._cond = condition
    fired = threading.Event()
    first = scheduler.call_after(0.5, fired.set)
    later = scheduler.call_after(60, fired.set)
    scheduler.cancel([later])
    assert condition.notified == 0, "the entry the thread sleeps until is still there"
    assert fired.wait(30), "the first entry still fires on time"
    again = scheduler.call_after(60, fired.set)
    woken = condition.notified
    scheduler.cancel([again, first])  # the next entry goes: the thread must look again (and end)
    assert condition.notified == woken + 1
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "timers-cancel-test"],
             what="the scheduler's thread to end with nothing scheduled")
