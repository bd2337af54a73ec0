"""The generic supervisor: restarts, strategies, escalation, isolation, ordered shutdown."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from executor.backoff import Backoff
from executor.supervision import (
    GetChildren,
    Restart,
    Strategy,
    SupervisorPolicy,
    start_root,
    supervisor_spec,
)

from .probe import Crash, Probe, Quit, SilentWorker, child_ref, wait_for, worker_spec

FAST = Backoff(min_s=0.01, max_s=0.05, jitter=0.1, reset_after_s=60)


def policy(strategy: Strategy = Strategy.ONE_FOR_ONE, max_restarts: int = 5) -> SupervisorPolicy:
    return SupervisorPolicy(strategy=strategy, max_restarts=max_restarts, period_s=60, backoff=FAST,
                            liveness_interval_s=0.05)


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    wait_for(lambda: {t.ident for t in threading.enumerate() if t.is_alive()} <= before,
             what="every actor and timer thread to end")


class Escalations:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None

    def __call__(self, reason: str | None) -> None:
        self.reason = reason
        self.event.set()


def test_permanent_child_crash_is_restarted_as_a_new_actor(probe: Probe) -> None:
    root = start_root("root", [worker_spec("a", probe), worker_spec("b", probe)], policy())
    probe.wait_starts("a", 1)
    probe.wait_starts("b", 1)
    first_a, first_b = child_ref(root, "a"), child_ref(root, "b")
    assert first_a is not None
    first_a.tell(Crash())
    probe.wait_starts("a", 2)
    wait_for(lambda: child_ref(root, "a") not in (None, first_a), what="a's new ref")
    assert child_ref(root, "b") is first_b  # one_for_one: the sibling is untouched
    statuses = {s.name: s for s in root.ask(GetChildren(), timeout=5)}
    assert statuses["a"].incarnation == 2 and statuses["a"].restarts == 1
    assert statuses["b"].incarnation == 1
    root.stop(timeout=10)


def test_failure_in_on_start_is_detected_and_retried(probe: Probe) -> None:
    probe.fail_starts["a"] = 2  # pykka calls neither on_failure nor on_stop for these
    root = start_root("root", [worker_spec("a", probe)], policy())
    probe.wait_starts("a", 3)
    wait_for(lambda: child_ref(root, "a") is not None, what="a up after two failed starts")
    root.stop(timeout=10)


def test_transient_and_temporary_children(probe: Probe) -> None:
    specs = [
        worker_spec("t", probe, Restart.TRANSIENT),
        worker_spec("tmp", probe, Restart.TEMPORARY),
        worker_spec("p", probe, Restart.PERMANENT),
    ]
    root = start_root("root", specs, policy())
    for name in ("t", "tmp", "p"):
        probe.wait_starts(name, 1)
    child_ref(root, "t").tell(Crash())  # type: ignore[union-attr]
    probe.wait_starts("t", 2)
    child_ref(root, "t").tell(Quit())  # type: ignore[union-attr]
    child_ref(root, "tmp").tell(Crash())  # type: ignore[union-attr]
    child_ref(root, "p").tell(Quit())  # type: ignore[union-attr]
    probe.wait_starts("p", 2)  # permanent: even a normal exit restarts it
    wait_for(lambda: child_ref(root, "t") is None and child_ref(root, "tmp") is None, what="t and tmp down")
    statuses = {s.name: s for s in root.ask(GetChildren(), timeout=5)}
    assert (statuses["t"].alive, statuses["tmp"].alive, statuses["p"].alive) == (False, False, True)
    assert probe.starts["t"] == 2 and probe.starts["tmp"] == 1
    root.stop(timeout=10)


def test_rest_for_one_restarts_the_later_children_only(probe: Probe) -> None:
    specs = [worker_spec(n, probe) for n in ("a", "b", "c")]
    root = start_root("root", specs, policy(Strategy.REST_FOR_ONE))
    for name in "abc":
        probe.wait_starts(name, 1)
    child_ref(root, "b").tell(Crash())  # type: ignore[union-attr]
    probe.wait_starts("b", 2)
    probe.wait_starts("c", 2)
    assert probe.starts["a"] == 1
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
    statuses = {s.name: s for s in root.ask(GetChildren(), timeout=5)}
    assert statuses["pool-x"].restarts == 1 and statuses["pool-y"].restarts == 0
    assert child_ref(root, "pool-y") is pool_y and child_ref(pool_y, "y1") is y1  # type: ignore[arg-type]
    assert probe.starts["y1"] == 1
    root.stop(timeout=10)


def test_liveness_check_catches_a_child_that_died_silently(probe: Probe) -> None:
    root = start_root("root", [worker_spec("s", probe, cls=SilentWorker)], policy())
    probe.wait_starts("s", 1)
    child_ref(root, "s").tell(Crash())  # type: ignore[union-attr]
    probe.wait_starts("s", 2)
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

    pol = SupervisorPolicy(max_restarts=10, backoff=Recording(min_s=0.01, max_s=0.08, jitter=0.0),
                           liveness_interval_s=0.05)
    probe.fail_starts["a"] = 4
    root = start_root("root", [worker_spec("a", probe)], pol)
    assert seen.wait(10)
    assert delays[:4] == [0.01, 0.02, 0.04, 0.08]
    root.stop(timeout=10)
