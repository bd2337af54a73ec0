"""A new incarnation starts only after the old one has fully stopped, as OTP waits for the EXIT.

pykka marks an actor dead before its ``on_failure``/``on_stop`` (our teardown) run, so a
supervisor that trusted ``is_alive()`` restarted a child while the old one was still tearing
down. These tests order events (the old teardown's end, the new start), not timings.
"""

from __future__ import annotations

import threading

from executor.supervision import start_root, supervisor_spec

from .probe import Crash, Escalations, Probe, Quit, SilentWorker, child_ref, policy, wait_for, worker_spec

SLOW_S = 1.0
"""Teardown time of the slow child: fifty liveness checks (every 0.02 s) happen meanwhile."""


def test_a_crashed_child_with_a_slow_teardown_is_restarted_after_it_ended(probe: Probe) -> None:
    probe.slow_teardown_s["a"] = SLOW_S
    root = start_root("root", [worker_spec("a", probe)], policy())
    probe.wait_starts("a", 1)
    child_ref(root, "a").tell(Crash())  # type: ignore[union-attr]
    probe.wait_starts("a", 2)
    assert probe.index("a", 1, "teardown-begin") < probe.index("a", 1, "teardown-end")
    assert probe.index("a", 1, "teardown-end") < probe.index("a", 2, "start")
    root.stop(timeout=10)


def test_a_child_that_quit_with_a_slow_teardown_is_restarted_after_it_ended(probe: Probe) -> None:
    probe.slow_teardown_s["a"] = SLOW_S
    root = start_root("root", [worker_spec("a", probe)], policy())
    probe.wait_starts("a", 1)
    child_ref(root, "a").tell(Quit())  # type: ignore[union-attr]
    probe.wait_starts("a", 2)
    assert probe.index("a", 1, "teardown-end") < probe.index("a", 2, "start")
    root.stop(timeout=10)


def test_a_child_that_died_silently_is_restarted_once_its_thread_ended(probe: Probe) -> None:
    """No ChildExited at all: the safety net waits for the thread, then restarts."""
    probe.slow_teardown_s["s"] = SLOW_S
    root = start_root("root", [worker_spec("s", probe, cls=SilentWorker)], policy())
    probe.wait_starts("s", 1)
    child_ref(root, "s").tell(Crash())  # type: ignore[union-attr]
    probe.wait_starts("s", 2)
    assert probe.index("s", 1, "teardown-end") < probe.index("s", 2, "start")
    root.stop(timeout=10)


def test_a_child_that_never_finishes_stopping_escalates_instead_of_a_second_instance(probe: Probe) -> None:
    probe.hold_teardown["a"] = threading.Event()
    escalated = Escalations()
    root = start_root("root", [worker_spec("a", probe, stop_timeout_s=0.3)], policy(), escalated)
    probe.wait_starts("a", 1)
    child_ref(root, "a").tell(Crash())  # type: ignore[union-attr]
    assert escalated.event.wait(10), "the root never gave up on its stuck child"
    assert "not starting a second instance" in (escalated.reason or "")
    assert probe.starts["a"] == 1
    probe.hold_teardown["a"].set()
    probe.wait_event(lambda: ("a", 1, "teardown-end") in probe.events, "the stuck teardown to end")
    wait_for(lambda: not root.is_alive(), what="root stopped")
    assert probe.starts["a"] == 1


def test_stopping_waits_for_a_crashed_child_that_is_still_tearing_down(probe: Probe) -> None:
    probe.slow_teardown_s["a"] = SLOW_S
    root = start_root("root", [worker_spec("a", probe), worker_spec("b", probe)], policy())
    probe.wait_starts("a", 1)
    probe.wait_starts("b", 1)
    child_ref(root, "a").tell(Crash())
    probe.wait_event(lambda: ("a", 1, "teardown-begin") in probe.events, "a's teardown to begin")
    root.stop(timeout=10)
    assert ("a", 1, "teardown-end") in probe.events  # stop returned after a's teardown, not before
    assert probe.starts["a"] == 1


def test_a_subtree_is_not_restarted_while_a_thread_of_the_old_one_still_runs(probe: Probe) -> None:
    """The sub-supervisor gives up, but its child's teardown outlives the stop timeout: the
    subtree counts as stopped only when every thread in it has ended, so the parent escalates
    rather than start a second subtree beside that child."""
    probe.hold_teardown["held"] = threading.Event()
    probe.fail_starts["failing"] = 100
    children = [worker_spec("held", probe, stop_timeout_s=0.3), worker_spec("failing", probe)]
    escalated = Escalations()
    root = start_root("root", [supervisor_spec("sub", children, policy(0), stop_timeout_s=0.5)], policy(),
                      escalated)
    assert escalated.event.wait(10), "the root never gave up"
    assert "sub has not finished stopping after 0.5s" in (escalated.reason or "")
    assert probe.starts["held"] == 1 and probe.starts["failing"] == 1
    probe.hold_teardown["held"].set()
    wait_for(lambda: not root.is_alive(), what="root stopped")
    probe.wait_event(lambda: ("held", 1, "teardown-end") in probe.events, "the held teardown to end")
