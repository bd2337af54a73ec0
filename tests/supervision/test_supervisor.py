"""The generic supervisor: one_for_one restarts, escalation, isolation, ordered shutdown."""

from __future__ import annotations

import threading
from typing import Any

import pykka

from executor.backoff import Backoff
from executor.supervision import SupervisorPolicy, start_root, supervisor_spec

from .probe import Crash, Escalations, Probe, Quit, child_ref, policy, wait_for, worker_spec


def test_a_crashed_child_is_restarted_as_a_new_actor_and_its_sibling_is_untouched(probe: Probe) -> None:
    root = start_root("root", [worker_spec("a", probe), worker_spec("b", probe)], policy())
    probe.wait_starts("a", 1)
    probe.wait_starts("b", 1)
    first_a, first_b = child_ref(root, "a"), child_ref(root, "b")
    assert first_a is not None
    first_a.tell(Crash())
    probe.wait_starts("a", 2)
    wait_for(lambda: child_ref(root, "a") not in (None, first_a), what="a's new ref")
    assert child_ref(root, "b") is first_b  # one_for_one: the sibling is untouched
    assert probe.index("a", 1, "teardown-end") < probe.index("a", 2, "start")
    assert probe.starts["b"] == 1
    root.stop(timeout=10)


def test_failure_in_on_start_is_detected_and_retried(probe: Probe) -> None:
    probe.fail_starts["a"] = 2  # pykka calls neither on_failure nor on_stop for these
    root = start_root("root", [worker_spec("a", probe)], policy())
    probe.wait_starts("a", 3)
    wait_for(lambda: child_ref(root, "a") is not None, what="a up after two failed starts")
    root.stop(timeout=10)


def test_a_child_that_stops_normally_is_restarted_too(probe: Probe) -> None:
    """Every child is permanent (OTP): a normal exit is restarted like a crash."""
    root = start_root("root", [worker_spec("p", probe)], policy())
    probe.wait_starts("p", 1)
    child_ref(root, "p").tell(Quit())  # type: ignore[union-attr]
    probe.wait_starts("p", 2)
    assert probe.index("p", 1, "teardown-end") < probe.index("p", 2, "start")
    root.stop(timeout=10)


def test_root_escalates_when_intensity_is_exceeded(probe: Probe) -> None:
    probe.fail_starts["a"] = 100
    escalated = Escalations()
    root = start_root("root", [worker_spec("a", probe), worker_spec("b", probe)], policy(max_restarts=3),
                      on_escalate=escalated)
    assert escalated.event.wait(10), "root never gave up"
    assert "more than 3 restarts" in (escalated.reason or "")
    assert probe.starts["a"] == 4  # the first start and three restarts
    wait_for(lambda: not root.is_alive(), what="root stopped")
    assert "b" in probe.stops  # its other children were stopped on the way out


def test_subtree_escalates_to_its_parent_and_leaves_the_sibling_subtree_alone(probe: Probe) -> None:
    probe.fail_starts["x1"] = 3  # enough to exhaust pool-x's intensity of 2, once
    tree = [
        supervisor_spec(
            "pool-x", [worker_spec("x1", probe), worker_spec("x2", probe)], policy(max_restarts=2)
        ),
        supervisor_spec("pool-y", [worker_spec("y1", probe)], policy()),
    ]
    root = start_root("root", tree, policy())
    probe.wait_starts("y1", 1)
    pool_y = child_ref(root, "pool-y")
    y1 = child_ref(pool_y, "y1")  # type: ignore[arg-type]
    probe.wait_starts("x1", 4)  # pool-x gave up, root restarted pool-x, x1 came up at last
    probe.wait_starts("x2", 2)  # x2 came back with its new subtree
    assert probe.starts["x2"] == 2  # pool-x was restarted once, as a whole
    assert child_ref(root, "pool-y") is pool_y and child_ref(pool_y, "y1") is y1  # type: ignore[arg-type]
    assert probe.starts["y1"] == 1
    root.stop(timeout=10)


def test_stop_is_in_reverse_start_order_and_leaves_no_thread(probe: Probe) -> None:
    before = threading.active_count()
    tree = [worker_spec("first", probe), supervisor_spec("sub", [worker_spec("inner", probe)], policy()),
            worker_spec("last", probe)]
    root = start_root("root", tree, policy())
    for name in ("first", "inner", "last"):
        probe.wait_starts(name, 1)
    assert threading.active_count() > before
    root.stop(timeout=10)
    assert probe.stops == ["last", "inner", "first"]
    assert pykka.ActorRegistry.get_all() == []
    wait_for(lambda: threading.active_count() <= before, what="threads back to the count before")


def test_restart_backoff_grows_between_consecutive_failures(probe: Probe) -> None:
    delays: list[float] = []
    seen = threading.Event()

    class Recording(Backoff):
        def delay(self, attempt: int, rng: Any = None) -> float:
            value = super().delay(attempt, rng)
            delays.append(value)
            if len(delays) == 4:
                seen.set()
            return value

    pol = SupervisorPolicy(max_restarts=10, backoff=Recording(min_s=0.01, max_s=0.08, jitter=0.0))
    probe.fail_starts["a"] = 4
    root = start_root("root", [worker_spec("a", probe)], pol)
    assert seen.wait(10)
    assert delays[:4] == [0.01, 0.02, 0.04, 0.08]
    root.stop(timeout=10)
