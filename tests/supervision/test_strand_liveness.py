"""Liveness read when asked: a strand says how long it has kept work waiting, the timer thread
how late it is, and ``HealthState`` judges both against their allowance (a fake clock for the
strands, a short allowance for the scheduler: nothing waits for an allowance to pass)."""

from __future__ import annotations

import threading
from typing import Any

import pykka

from executor.observability import HealthState
from executor.supervision.strand import Strand
from executor.supervision.strandactor import StrandActor
from executor.supervision.timers import Scheduler
from tests.ops.probes import FakeClock

from .probe import wait_for
from .test_strand import TIMEOUT_S, Recorder, hold

ALLOWANCE_S = 5.0


def watched(strand: Strand, clock: FakeClock) -> HealthState:
    health = HealthState()
    health.watch("strand", lambda: (strand.stall_s(), ALLOWANCE_S))
    return health


def test_a_turn_held_past_twice_its_allowance_reads_stuck_and_live_once_it_ends() -> None:
    clock = FakeClock()
    strand = Strand("test/liveness", clock=clock)
    health = watched(strand, clock)
    ref = Recorder.start(strand, "a", [])
    try:
        gate = hold(ref)
        clock.now += 2 * ALLOWANCE_S
        assert health.liveness()[0], "exactly twice the allowance is still live"
        clock.now += 0.5
        ok, details = health.liveness()
        assert not ok and details["stale"] == ["strand"]
        assert details["components"]["strand"] == {"ok": False, "age_s": 10.5, "interval_s": ALLOWANCE_S}
        gate.release.set()
        assert ref.ask("after", timeout=TIMEOUT_S) == ("a", "after")
        wait_for(lambda: strand.stall_s() == 0.0, what="the turn to end")
        assert health.liveness()[0]
    finally:
        ref.stop(timeout=TIMEOUT_S)


def test_an_idle_strand_reads_live_however_long_it_has_been_idle() -> None:
    clock = FakeClock()
    strand = Strand("test/liveness", clock=clock)
    health = watched(strand, clock)
    ref = Recorder.start(strand, "a", [])
    try:
        assert ref.ask("once", timeout=TIMEOUT_S) == ("a", "once")
        wait_for(lambda: strand._sleeping, what="the strand's thread to sleep")
        clock.now += 86400.0
        ok, details = health.liveness()
        assert ok and details["components"]["strand"]["age_s"] == 0.0
    finally:
        ref.stop(timeout=TIMEOUT_S)


class _Member:
    """A strand member that no thread runs: what a strand whose thread is gone would hold."""

    queued = False
    queued_at = 0.0

    def strand_turn(self) -> bool:
        return True

    def strand_pending(self) -> bool:
        return False


def test_work_that_waits_in_the_line_counts_from_when_it_was_put_there() -> None:
    clock = FakeClock()
    strand = Strand("test/liveness", clock=clock)  # no thread: nothing will take the member
    health = watched(strand, clock)
    clock.now += 3600.0
    assert strand.stall_s() == 0.0
    with strand.lock:
        strand.schedule(_Member())
    clock.now += 11.0
    ok, details = health.liveness()
    assert not ok and details["components"]["strand"]["age_s"] == 11.0


class Waiter(StrandActor):
    """Waits on its strand (as a supervisor waits for a child to stop) until told to go on."""

    def __init__(self, strand: Strand, go_on: threading.Event, waiting: threading.Event) -> None:
        super().__init__(strand)
        self.go_on = go_on
        self.waiting = waiting

    def on_receive(self, message: Any) -> Any:
        if message == "wait":
            self.waiting.set()
            return self.strand.wait_until(self.go_on.is_set, TIMEOUT_S * 3)
        return message


def test_a_nested_wait_that_serves_the_others_is_not_stuck_but_a_nested_turn_can_be() -> None:
    clock = FakeClock()
    strand = Strand("test/liveness", clock=clock)
    health = watched(strand, clock)
    go_on, waiting = threading.Event(), threading.Event()
    waiter = Waiter.start(strand, go_on, waiting)
    neighbour = Recorder.start(strand, "n", [])
    try:
        answer = waiter.ask("wait", block=False)
        assert waiting.wait(TIMEOUT_S)
        waiter.tell("its own next message")  # waits for the outer turn to end: not counted
        clock.now += 60.0
        assert health.liveness()[0], "the thread runs the line: the neighbour would get its turn"
        assert neighbour.ask("meanwhile", timeout=TIMEOUT_S) == ("n", "meanwhile")
        gate = hold(neighbour)  # a nested turn that blocks holds every member up
        clock.now += 2 * ALLOWANCE_S + 1
        assert not health.liveness()[0]
        gate.release.set()
        go_on.set()
        assert answer.get(timeout=TIMEOUT_S) is True
        wait_for(lambda: strand.stall_s() == 0.0, what="the strand to be idle")
    finally:
        go_on.set()
        for ref in (waiter, neighbour):
            ref.stop(timeout=TIMEOUT_S)


def test_a_timer_thread_stuck_in_a_callback_reads_stuck_once_its_next_entry_is_late() -> None:
    scheduler = Scheduler(name="timers-under-test")
    health = HealthState()
    allowance = 0.05
    health.watch("timers", lambda: (scheduler.overdue_s(), allowance))
    assert scheduler.overdue_s() == 0.0  # nothing scheduled
    scheduler.call_after(3600.0, lambda: None)
    assert scheduler.overdue_s() == 0.0  # scheduled, not due
    entered, release = threading.Event(), threading.Event()

    def stuck() -> None:
        entered.set()
        release.wait(TIMEOUT_S)

    scheduler.call_after(0.0, stuck)
    assert entered.wait(TIMEOUT_S)
    scheduler.call_after(0.0, lambda: None)  # due now, behind the stuck callback
    wait_for(lambda: scheduler.overdue_s() > 2 * allowance, what="the next entry to be late")
    ok, details = health.liveness()
    assert not ok and details["stale"] == ["timers"]
    release.set()
    wait_for(lambda: scheduler.overdue_s() == 0.0, what="the thread to catch up")
    assert health.liveness()[0]
    scheduler.cancel(list(scheduler._heap))
    wait_for(lambda: not any(t.name == "timers-under-test" for t in threading.enumerate()),
             what="the idle scheduler's thread to end")


def test_a_probe_that_fails_reads_stuck() -> None:
    def broken() -> tuple[float, float]:
        raise pykka.ActorDeadError("gone")

    health = HealthState()
    health.watch("broken", broken)
    ok, details = health.liveness()
    assert not ok and details["components"]["broken"]["age_s"] is None
    health.forget("broken")
    assert health.liveness()[0]
