"""When RUNNING goes out with ``running_after_s`` set (0, the default, sends it at admission):
once a run has lasted that long (at most one progress interval). A run that ends sooner reports
only its result (one GMS write, not two); one that lasts reports RUNNING before its result and
never after it."""

from __future__ import annotations

from tests.faults.harness import FaultWorld, wait_until


def statuses(world: FaultWorld, urn: str) -> list[str]:
    return [str(r.get("status")) for r in world.history(urn)]


def test_a_run_that_ends_before_running_after_s_reports_only_its_result(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", running_after_s=60, progress_interval_s=60)
    quick = world.submit()
    world.open_gate(quick)  # the recipe ends as soon as it has started
    assert world.wait_status(quick)["status"] == "SUCCESS"
    assert statuses(world, quick.urn) == ["SUCCESS"]
    assert len(world.ledger.events(quick.run_id, "start")) == 1
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted")
    assert a.running


def test_a_run_that_lasts_reports_running_before_its_result(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", running_after_s=5, progress_interval_s=10)
    lasting = world.submit()
    world.ledger.wait(lasting.run_id, "start")
    # The recipe has its input, so it was admitted at most a moment ago: no RUNNING yet (with
    # the default 0 it would have gone out at admission, before the recipe's input).
    assert statuses(world, lasting.urn) == []
    world.wait_status(lasting, {"RUNNING"})  # the gate is shut: it lasts until we open it
    world.open_gate(lasting)
    assert world.wait_status(lasting)["status"] == "SUCCESS"
    seen = statuses(world, lasting.urn)
    assert seen[0] == "RUNNING" and seen[-1] == "SUCCESS"
    assert "RUNNING" not in seen[seen.index("SUCCESS"):]
    assert a.running


def test_a_run_that_ends_at_once_reports_running_first(world: FaultWorld) -> None:
    """``running_after_s`` 0: the first RUNNING goes out in the Reporter's turn of the Progress
    and the result in the turn of the Finish right behind it; GMS sees them in that order."""
    world.start_cp()
    a = world.executor("a", progress_interval_s=60)
    quick = world.submit()
    world.open_gate(quick)
    assert world.wait_status(quick)["status"] == "SUCCESS"
    assert statuses(world, quick.urn) == ["RUNNING", "SUCCESS"]
    assert a.running
