"""HealthState: liveness from heartbeat ages, readiness from pool states (a fake clock, no waiting)."""

from __future__ import annotations

import threading

import pytest

from executor.observability import HealthState
from tests.ops.probes import FakeClock, Turn


def test_live_with_no_component_yet() -> None:
    ok, details = HealthState().liveness()
    assert ok
    assert details == {"status": "ok", "components": {}}


def test_a_component_goes_stale_after_twice_its_allowance() -> None:
    clock = FakeClock()
    health = HealthState()
    health.watch("root/pool:a/poller", Turn(clock, 2.0))
    health.watch("root/observability", Turn(clock, 10.0))
    clock.now += 4.0
    ok, details = health.liveness()
    assert ok, details
    clock.now += 0.5
    ok, details = health.liveness()
    assert not ok
    assert details["status"] == "fail"
    assert details["stale"] == ["root/pool:a/poller"]
    assert details["components"]["root/pool:a/poller"] == {"ok": False, "age_s": 4.5, "interval_s": 2.0}
    assert details["components"]["root/observability"]["ok"] is True


def test_a_turn_that_ends_or_forget_revives_liveness() -> None:
    clock = FakeClock()
    health = HealthState()
    a = Turn(clock, 1.0)
    health.watch("a", a)
    health.watch("b", Turn(clock, 1.0))
    clock.now += 5
    a.end()
    assert health.liveness()[1]["stale"] == ["b"]
    health.forget("b")
    assert health.liveness()[0]


def test_not_ready_without_any_pool() -> None:
    ok, details = HealthState().readiness()
    assert not ok
    assert details["status"] == "not ready"
    assert details["reasons"] == ["no pool registered yet"]


def test_ready_only_when_every_pool_is_ready_and_says_why_not() -> None:
    health = HealthState()
    health.set_ready("a", True, "")
    health.set_ready("b", False, "no lease: listExecutorConfigs returned no entry for pool b")
    ok, details = health.readiness()
    assert not ok
    assert details["pools"]["a"] == {"ready": True, "reason": ""}
    assert details["reasons"] == ["pool b: no lease: listExecutorConfigs returned no entry for pool b"]
    health.set_ready("b", True, "")
    ok, details = health.readiness()
    assert ok
    assert details["status"] == "ready"
    assert "reasons" not in details


def test_a_blocker_keeps_a_polling_pool_not_ready_until_cleared() -> None:
    health = HealthState()
    health.set_ready("a", True, "leased and polling")
    health.set_blocker("a", "reporter", "results not delivered: GMS refused the token")
    health.set_ready("a", True, "leased and polling")  # the poller's next success does not hide it
    ok, details = health.readiness()
    assert not ok
    assert details["reasons"] == ["pool a: results not delivered: GMS refused the token"]
    health.set_ready("a", False, "no lease: GMS answered 401")
    assert health.readiness()[1]["pools"]["a"] == {
        "ready": False, "reason": "no lease: GMS answered 401; results not delivered: GMS refused the token"
    }
    health.set_ready("a", True, "leased and polling")
    health.set_blocker("a", "reporter", None)
    ok, details = health.readiness()
    assert ok and details["pools"]["a"] == {"ready": True, "reason": "leased and polling"}
    health.set_blocker("gone", "reporter", "x")  # a blocker of an unregistered pool shows nowhere
    assert health.readiness()[0]


def test_stopping_turns_readiness_off() -> None:
    health = HealthState()
    health.set_ready("a", True)
    health.mark_stopping("draining 2 running task(s)")
    ok, details = health.readiness()
    assert not ok
    assert details["reasons"] == ["draining 2 running task(s)"]


def test_remove_pool() -> None:
    health = HealthState()
    health.set_ready("a", True)
    health.set_ready("b", False, "starting")
    health.remove_pool("b")
    assert health.readiness()[0]


def test_a_probe_without_a_name_is_refused() -> None:
    with pytest.raises(ValueError):
        HealthState().watch("", lambda: (0.0, 1.0))


def test_bad_pool_id_is_refused() -> None:
    with pytest.raises(ValueError):
        HealthState().set_ready("", True)


def test_concurrent_writers_and_readers() -> None:
    health = HealthState()
    start = threading.Barrier(5)

    def writer(n: int) -> None:
        start.wait(timeout=10)
        for i in range(500):
            health.watch(f"c{n}-{i % 7}", lambda: (0.0, 5.0))
            health.set_ready(f"p{n}", i % 2 == 0, "flip")

    def reader() -> None:
        start.wait(timeout=10)
        for _ in range(500):
            health.liveness()
            health.readiness()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    ok, details = health.liveness()
    assert ok
    assert len(details["components"]) == 28
    assert health.readiness()[1]["pools"].keys() == {"p0", "p1", "p2", "p3"}


def test_the_readiness_listener_hears_each_change_and_only_changes() -> None:
    """What sends systemd its STATUS= as readiness changes: a repeat of the same state (a
    poller re-confirming its readiness every receive) must not wake anyone."""
    health = HealthState()
    heard: list[bool] = []
    health.on_readiness_change(lambda: heard.append(health.readiness()[0]))
    health.set_ready("a", True, "")
    health.set_ready("a", True, "")
    assert heard == [True]
    health.set_blocker("a", "reporter", "GMS refuses results")
    health.set_blocker("a", "reporter", "GMS refuses results")
    health.set_blocker("a", "reporter", None)
    health.set_blocker("a", "reporter", None)
    assert heard == [True, False, True]
    health.mark_stopping("draining")
    health.mark_stopping("draining")
    health.remove_pool("a")
    health.remove_pool("a")
    assert heard == [True, False, True, False, False]
    health.on_readiness_change(None)
    health.set_ready("b", True, "")
    assert len(heard) == 5


def test_a_probe_replaces_an_earlier_one_of_the_same_name_and_forget_drops_it() -> None:
    clock = FakeClock()
    health = HealthState()
    health.watch("root/pool:a/leaser", Turn(clock, 1.0))  # a predecessor stuck for a minute
    clock.now += 60
    health.watch("root/pool:a/leaser", lambda: (0.0, 10.0))
    ok, details = health.liveness()
    expected = {"ok": True, "age_s": 0.0, "interval_s": 10.0}
    assert ok and details["components"]["root/pool:a/leaser"] == expected
    health.watch("root/pool:a/leaser", lambda: (20.5, 10.0))
    assert health.liveness()[1]["stale"] == ["root/pool:a/leaser"]
    health.forget("root/pool:a/leaser")
    assert health.liveness() == (True, {"status": "ok", "components": {}})
