"""Strands: actors that share one thread, with pykka's semantics for each of them."""

from __future__ import annotations

import gc
import threading
from types import TracebackType
from typing import Any

import pykka
import pytest

from executor.supervision import start_root
from executor.supervision.strand import Strand
from executor.supervision.strandactor import StrandActor, StrandDeadlock

from .probe import Crash, Inspect, Probe, child_ref, policy, wait_for, worker_spec

TIMEOUT_S = 10.0


class Gate:
    """Holds a strand's thread inside one handler until released (to line messages up)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


class Recorder(StrandActor):
    """Records what it handles, in order, in a list shared by the test's actors."""

    def __init__(self, strand: Strand, name: str, log: list[tuple[str, Any]]) -> None:
        super().__init__(strand)
        self.name = name
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Gate):
            message.entered.set()
            message.release.wait(TIMEOUT_S)
            return None
        if message == "boom":
            raise RuntimeError("boom")
        if message == "thread":
            return threading.current_thread().name
        if isinstance(message, tuple) and message[0] == "ask":
            return message[1].ask("ping" if len(message) == 2 else message[2], timeout=TIMEOUT_S)
        if isinstance(message, tuple) and message[0] == "ask without a deadline":
            return message[1].ask("ping")
        self.log.append((self.name, message))
        return (self.name, message)

    def echo(self, value: int) -> int:
        return value

    def on_stop(self) -> None:
        self.log.append((self.name, "on_stop"))

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        self.log.append((self.name, "on_failure"))


class FailingStart(Recorder):
    def on_start(self) -> None:
        raise RuntimeError("no start")


class ExitingStart(Recorder):
    def on_start(self) -> None:
        raise SystemExit("a library gave up")


def hold(ref: pykka.ActorRef[Any]) -> Gate:
    """Block the strand of ``ref`` inside one of its turns."""
    gate = Gate()
    ref.tell(gate)
    assert gate.entered.wait(TIMEOUT_S)
    return gate


def strand_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_one_thread_runs_every_actor_of_a_strand_and_ends_after_the_last() -> None:
    strand = Strand("test/strand", "strand@test")
    log: list[tuple[str, Any]] = []
    refs = [Recorder.start(strand, f"a{i}", log) for i in range(5)]
    assert {ref.ask("thread", timeout=TIMEOUT_S) for ref in refs} == {"test/strand"}
    assert strand.threads_started == 1 and len(strand_threads("test/strand")) == 1
    assert len(strand) == 5
    for ref in refs:
        assert ref.stop(timeout=TIMEOUT_S)
    wait_for(lambda: not strand_threads("test/strand"), what="the strand's thread to end")
    again = Recorder.start(strand, "late", log)  # a new member starts a new thread
    assert again.ask("thread", timeout=TIMEOUT_S) == "test/strand"
    assert strand.threads_started == 2
    again.stop(timeout=TIMEOUT_S)


def test_each_actor_gets_its_messages_in_order_and_the_actors_take_turns() -> None:
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    a, b = Recorder.start(strand, "a", log), Recorder.start(strand, "b", log)
    gate = hold(Recorder.start(strand, "holder", log))
    for i in range(3):
        a.tell(i)
    for i in range(3):
        b.tell(i)
    gate.release.set()
    b.ask("done", timeout=TIMEOUT_S)
    a.ask("done", timeout=TIMEOUT_S)
    assert log[:6] == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_ask_tell_and_proxy_work_as_with_pykka_threads() -> None:
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    a = Recorder.start(strand, "a", log)
    a.tell("told")
    assert a.ask("asked", timeout=TIMEOUT_S) == ("a", "asked")
    assert log == [("a", "told"), ("a", "asked")]
    assert a.proxy().echo(7).get(timeout=TIMEOUT_S) == 7
    with pytest.raises(RuntimeError, match="boom"):
        a.ask("boom", timeout=TIMEOUT_S)  # a failing ask goes back to the asker ...
    assert a.is_alive()  # ... and does not fail the actor
    a.stop(timeout=TIMEOUT_S)
    assert log[-1] == ("a", "on_stop")


def test_a_handler_may_ask_an_actor_on_its_own_strand() -> None:
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    a, b = Recorder.start(strand, "a", log), Recorder.start(strand, "b", log)
    assert a.ask(("ask", b), timeout=TIMEOUT_S) == ("b", "ping")  # no deadlock: b got a nested turn
    assert strand.threads_started == 1


def test_an_ask_of_an_actor_lower_on_the_stack_fails_at_once_instead_of_hanging() -> None:
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    a, b = Recorder.start(strand, "a", log), Recorder.start(strand, "b", log)
    # a asks b; b's nested turn asks a back, without a deadline: a is in its turn below b's, so
    # that answer could never come (before the check, this wait hung the strand for ever).
    with pytest.raises(StrandDeadlock, match="lower on test/strand's stack"):
        a.ask(("ask", b, ("ask without a deadline", a)), timeout=TIMEOUT_S)
    assert a.ask(("ask", b), timeout=TIMEOUT_S) == ("b", "ping")  # the strand lives on
    for ref in (a, b):
        ref.stop(timeout=TIMEOUT_S)


def test_a_crash_calls_on_failure_and_the_other_actors_run_on() -> None:
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    a, b = Recorder.start(strand, "a", log), Recorder.start(strand, "b", log)
    a.tell("boom")
    wait_for(lambda: not a.is_alive(), what="a to fail")
    assert ("a", "on_failure") in log and ("a", "on_stop") not in log
    assert b.ask("still here", timeout=TIMEOUT_S) == ("b", "still here")
    with pytest.raises(pykka.ActorDeadError):
        a.ask("anyone?", timeout=TIMEOUT_S)


def test_a_failing_start_stops_only_that_actor() -> None:
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    b = Recorder.start(strand, "b", log)
    bad = FailingStart.start(strand, "bad", log)
    wait_for(lambda: not bad.is_alive(), what="the failed start to stop the actor")
    with pytest.raises(pykka.ActorDeadError):
        bad.ask("x", timeout=TIMEOUT_S)
    assert b.ask("x", timeout=TIMEOUT_S) == ("b", "x")
    assert len(strand) == 1


def test_a_base_exception_in_a_start_stops_every_actor_as_pykka_does_and_ends_cleanly() -> None:
    """Not raised into the strand's thread: the actor ends (its loop too), every actor is
    stopped as pykka stops them, and the strand lets go of all of them."""
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    b = Recorder.start(strand, "b", log)
    bad = ExitingStart.start(strand, "bad", log)
    wait_for(lambda: not bad.is_alive() and not b.is_alive(), what="every actor to be stopped")
    wait_for(lambda: len(strand) == 0, what="the strand to let go of both actors")


def test_a_stop_answers_the_asks_behind_it_with_actor_dead_error() -> None:
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    a = Recorder.start(strand, "a", log)
    gate = hold(Recorder.start(strand, "holder", log))
    before = a.ask("before", block=False)
    stopped = a.stop(block=False)
    after = a.ask("after", block=False)  # queued behind the stop
    gate.release.set()
    assert before.get(timeout=TIMEOUT_S) == ("a", "before")
    assert stopped.get(timeout=TIMEOUT_S) is True
    with pytest.raises(pykka.ActorDeadError):
        after.get(timeout=TIMEOUT_S)
    assert a.actor_class is Recorder and not a.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        a.ask("later", timeout=TIMEOUT_S)
    assert ("a", "after") not in log and log[-1] == ("a", "on_stop")


def test_a_supervisor_restarts_and_stops_children_on_its_own_strand(probe: Probe) -> None:
    strand = Strand("test/control")
    specs = [worker_spec("a", probe, strand=strand), worker_spec("b", probe, strand=strand)]
    root = start_root("root", specs, policy(), strand=strand)
    probe.wait_starts("a", 1)
    probe.wait_starts("b", 1)
    first_a, first_b = child_ref(root, "a"), child_ref(root, "b")
    assert first_a is not None
    first_a.tell(Crash())
    probe.wait_starts("a", 2)  # the supervisor saw the crash and restarted a, on the same strand
    assert probe.index("a", 1, "teardown-end") < probe.index("a", 2, "start")
    assert child_ref(root, "b") is first_b and probe.starts["b"] == 1
    assert strand.threads_started == 1 and len(strand_threads("test/control")) == 1
    assert root.stop(timeout=TIMEOUT_S)  # stops b and a from their own strand: no deadlock
    assert sorted(probe.stops) == ["a", "a", "b"]
    wait_for(lambda: not strand_threads("test/control"), what="the strand's thread to end")


def test_a_supervisor_waiting_for_a_child_keeps_its_strand_live(probe: Probe) -> None:
    strand = Strand("test/control")
    probe.hold_teardown["slow"] = threading.Event()
    specs = [worker_spec("neighbour", probe, strand=strand), worker_spec("slow", probe)]
    root = start_root("root", specs, policy(), strand=strand)
    probe.wait_starts("slow", 1)
    neighbour = child_ref(root, "neighbour")
    assert neighbour is not None
    stopping = root.stop(block=False)
    probe.wait_event(lambda: ("slow", 1, "teardown-begin") in probe.events, "slow's teardown")
    # The root waits on the strand for "slow" to end; its neighbour still answers meanwhile.
    assert neighbour.ask(Inspect(), timeout=TIMEOUT_S) is False
    probe.hold_teardown["slow"].set()
    assert stopping.get(timeout=TIMEOUT_S) is True
    assert probe.stops == ["slow", "neighbour"]


def test_a_failed_start_on_a_shared_strand_is_noticed_and_retried(probe: Probe) -> None:
    strand = Strand("test/control")
    probe.fail_starts["a"] = 2
    specs = [worker_spec("a", probe, strand=strand), worker_spec("b", probe, strand=strand)]
    root = start_root("root", specs, policy(), strand=strand)
    probe.wait_starts("a", 3)
    wait_for(lambda: child_ref(root, "a") is not None, what="a up after two failed starts")
    assert probe.starts["b"] == 1 and strand.threads_started == 1
    assert root.stop(timeout=TIMEOUT_S)


def test_a_strand_keeps_its_live_actors_and_a_kept_ref_does_not_keep_an_ended_one() -> None:
    strand = Strand("test/strand")
    ref = Recorder.start(strand, "a", [])
    gc.collect()  # only the ref is held here: the strand keeps the idle actor, as a thread would
    assert ref.ask("still", timeout=TIMEOUT_S) == ("a", "still")
    assert ref.stop(timeout=TIMEOUT_S)
    wait_for(lambda: not strand_threads("test/strand"), what="the strand's thread to end")
    gc.collect()
    assert ref._actor_weakref() is None  # freed, with whatever sockets it held


class Waiter(StrandActor):
    """Waits on its strand for a condition nobody makes true, up to a short deadline."""

    def on_receive(self, message: Any) -> Any:
        return self.strand.wait_until(lambda: False, message)


def test_nested_waits_that_time_out_while_others_schedule_leave_the_strand_wakeable() -> None:
    """A nested wait's deadline passing just as another thread schedules a member (the wake
    then comes after the sleeper gave up): every message is still handled, in order, and the
    strand's thread still sleeps and wakes for the next one."""
    strand = Strand("test/strand")
    log: list[tuple[str, Any]] = []
    waiter, other = Waiter.start(strand), Recorder.start(strand, "other", log)
    stop = threading.Event()

    def tell_meanwhile() -> None:
        count = 0
        while not stop.is_set():
            other.tell(count)
            count += 1
            stop.wait(0.0005)

    teller = threading.Thread(target=tell_meanwhile)
    teller.start()
    try:
        for _ in range(100):
            assert waiter.ask(0.001, timeout=TIMEOUT_S) is False
    finally:
        stop.set()
        teller.join(TIMEOUT_S)
    other.ask("last", timeout=TIMEOUT_S)
    numbers = [m for _, m in log if m != "last"]
    assert numbers == list(range(len(numbers))) and log[-1] == ("other", "last")
    wait_for(lambda: strand._sleeping, what="the strand's thread to sleep")
    assert other.ask("awake", timeout=TIMEOUT_S) == ("other", "awake")
    waiter.stop(timeout=TIMEOUT_S)
    other.stop(timeout=TIMEOUT_S)
