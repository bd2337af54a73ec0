"""Parking: a child that keeps failing is left stopped for a long backoff while its siblings run
on; the supervisor gives up only when every child that may park is parked at once."""

from __future__ import annotations

import threading

from executor.supervision import ChildSpec, start_root, supervisor_spec

from .probe import Escalations, Probe, child_ref, policy, wait_for, worker_spec


class Parks:
    """An ``on_park`` hook that records (name, reason, delay), and the probe's start counts then."""

    def __init__(self, probe: Probe | None = None) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.starts: list[dict[str, int]] = []
        self.probe = probe
        self.cond = threading.Condition()

    def __call__(self, name: str, reason: str, delay_s: float) -> None:
        with self.cond:
            self.calls.append((name, reason, delay_s))
            self.starts.append(dict(self.probe.starts) if self.probe else {})
            self.cond.notify_all()

    def wait(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.calls) >= count, 10), f"{count} park(s) never came"


def pools(probe: Probe, failing: str | None = None) -> list[ChildSpec]:
    """Two parkable subtrees, ``pool-x`` and ``pool-y``, each with one worker; ``failing``
    names a worker that fails at every start (its subtree gives up at once)."""
    if failing is not None:
        probe.fail_starts[failing] = 1000
    return [
        supervisor_spec(f"pool-{n}", [worker_spec(f"{n}1", probe)], policy(max_restarts=0), parks=True)
        for n in "xy"
    ]


def test_a_pool_that_keeps_failing_is_parked_while_the_other_runs_on(probe: Probe) -> None:
    parks, escalated = Parks(probe), Escalations()
    root = start_root("root", pools(probe, failing="x1"), policy(max_restarts=2, park_s=0.5), escalated,
                      on_park=parks)
    probe.wait_starts("y1", 1)
    pool_y = child_ref(root, "pool-y")
    y1 = child_ref(pool_y, "y1")  # type: ignore[arg-type]
    parks.wait(1)
    name, reason, delay = parks.calls[0]
    assert name == "pool-x" and "giving up" in reason and delay == 0.5
    assert parks.starts[0]["x1"] == 3  # the first start and two restarts, then parked
    probe.wait_starts("x1", 4)  # started again after the park
    parks.wait(2)  # and parked again, since it still fails
    assert not escalated.event.is_set()
    assert child_ref(root, "pool-y") is pool_y and child_ref(pool_y, "y1") is y1  # type: ignore[arg-type]
    assert probe.starts["y1"] == 1
    root.stop(timeout=10)


def test_a_parked_pool_that_recovers_stays_up(probe: Probe) -> None:
    parks = Parks()
    probe.fail_starts["x1"] = 3  # fails through its budget once, then works
    specs = pools(probe)
    root = start_root("root", specs, policy(max_restarts=2, park_s=0.2), on_park=parks)
    parks.wait(1)
    probe.wait_starts("x1", 4)
    wait_for(lambda: child_ref(root, "pool-x") is not None, what="pool-x up again")
    pool_x = child_ref(root, "pool-x")
    assert child_ref(pool_x, "x1") is not None  # type: ignore[arg-type]
    assert len(parks.calls) == 1 and probe.starts["y1"] == 1
    root.stop(timeout=10)


def test_when_every_pool_is_parked_the_root_gives_up(probe: Probe) -> None:
    """A child that does not park (like observability) is not 'something useful' on its own."""
    probe.fail_starts["x1"] = probe.fail_starts["y1"] = 1000
    specs = [worker_spec("observability", probe), *pools(probe)]
    parks, escalated = Parks(), Escalations()
    root = start_root("root", specs, policy(max_restarts=1, park_s=60), escalated, on_park=parks)
    assert escalated.event.wait(10), "the root never gave up"
    assert "nothing useful is left running" in (escalated.reason or "")
    assert sorted(name for name, _, _ in parks.calls) == ["pool-x", "pool-y"]
    wait_for(lambda: not root.is_alive(), what="root stopped")
    assert "observability" in probe.stops


def test_a_child_that_does_not_park_still_escalates_on_its_own(probe: Probe) -> None:
    probe.fail_starts["observability"] = 1000
    escalated = Escalations()
    root = start_root("root", [worker_spec("observability", probe), *pools(probe)], policy(max_restarts=2),
                      escalated)
    assert escalated.event.wait(10), "the root never gave up"
    assert "more than 2 restarts" in (escalated.reason or "")
    wait_for(lambda: not root.is_alive(), what="root stopped")


def test_a_pool_whose_old_threads_will_not_end_is_parked_not_doubled(probe: Probe) -> None:
    """pool-x gives up, but a child of it will not finish stopping: rather than start a second
    pool-x beside that child, the root parks it, and starts it once the child has ended."""
    probe.hold_teardown["held"] = threading.Event()
    probe.fail_starts["failing"] = 1
    x = [worker_spec("held", probe, stop_timeout_s=0.2), worker_spec("failing", probe)]
    specs = [supervisor_spec("pool-x", x, policy(0), stop_timeout_s=0.3, parks=True),
             supervisor_spec("pool-y", [worker_spec("y1", probe)], policy(0), parks=True)]
    parks, escalated = Parks(), Escalations()
    root = start_root("root", specs, policy(park_s=0.3), escalated, on_park=parks)
    parks.wait(1)
    assert parks.calls[0][0] == "pool-x" and "has not finished stopping" in parks.calls[0][1]
    assert probe.starts["held"] == 1
    probe.hold_teardown["held"].set()
    probe.wait_starts("held", 2)
    # A new pool-x numbers its children anew: order the events of every "held" by name.
    assert probe.sequence("held")[:4] == ["start", "teardown-begin", "teardown-end", "start"]
    assert probe.starts["y1"] == 1 and not escalated.event.is_set()
    root.stop(timeout=10)
