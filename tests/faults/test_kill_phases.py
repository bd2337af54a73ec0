"""A KILL from DataHub ends a task in every phase it can wait in (issue 11.2).

Before the recipe starts, a cancelled Task settles at once as CANCELLED: while it waits for
admission behind a running request, and while it waits for a secret resolver that crashed
with its ``Resolve`` (the deadline would retry it; the KILL must not wait for that). While
the recipe runs, its process group is stopped. In each case the ledger shows whether the
recipe ever started (got its input: a recipe pre-started while its secrets resolve is killed
before that, and its work dir goes with it).
"""

from __future__ import annotations

import json

from tests.faults.harness import FaultWorld, wait_until
from tests.faults.test_lease import CREATE_SECRET
from tests.fixtures.controlplane import graphql

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"


def _cancelled(world: FaultWorld, urn: str) -> str:
    world.live_cp.ingestion.cancel(urn)
    request = next(r for r in world.requests if r.urn == urn)
    result = world.wait_status(request, timeout_s=30)
    assert result["status"] == "CANCELLED", result.get("report", "")[:300]
    return str(result.get("report", ""))


def test_a_kill_ends_a_running_recipe(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a")
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    report = _cancelled(world, request.urn)
    assert "KILL" in report
    assert world.ledger.events(request.run_id, "term")  # the recipe was stopped, not left to run
    assert a.running


def test_a_kill_ends_a_task_awaiting_admission(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", max_workers=2)
    running = world.submit()
    world.ledger.wait(running.run_id, "start")
    heavy = world.submit(extra_args={"extra_env_vars": json.dumps({"EXECUTOR_TASK_WEIGHT": "1.0"})})
    a.wait_log("waiting for capacity")
    report = _cancelled(world, heavy.urn)
    assert "before it started" in report
    assert not world.ledger.events(heavy.run_id, "start")
    # The other one runs on (its first RUNNING goes out with the next progress tick).
    wait_until(lambda: (world.result(running.urn) or {}).get("status") == "RUNNING", 30, "RUNNING")
    assert not world.ledger.events(running.run_id, "end")
    world.open_gate(running)
    assert world.wait_status(running)["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the queue to drain")


def test_a_kill_ends_a_task_waiting_for_a_lost_resolve(world: FaultWorld) -> None:
    world.start_cp()
    graphql(world.live_cp, CREATE_SECRET, {"input": {"name": "SIM_SECRET", "value": "sim-secret-value"}})
    a = world.executor("a", env={FAULTS: "pool:default/resolver@Resolve*1"})
    request = world.submit(secret="${SIM_SECRET}")
    a.wait_log("injected fault at")
    # Meanwhile the recipe was spawned with its input held (it waits for its stdin).
    pool_dir = world.tmp / "state-a" / "pools" / "default"
    task = request.urn.rsplit(":", 1)[-1]
    wait_until(lambda: list((pool_dir / "work").glob(f"{task}-*")), 30, "the recipe to be pre-started")
    report = _cancelled(world, request.urn)
    assert "before it started" in report
    assert not world.ledger.events(request.run_id, "start")  # it never got its input
    assert not a.count("the secret resolver did not answer")  # the KILL did not wait for the deadline
    wait_until(lambda: not list((pool_dir / "work").glob(f"{task}-*")), 30, "its work dir to be removed")
    assert not (pool_dir / "logs" / f"{task}.log").exists()
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the queue to drain")
