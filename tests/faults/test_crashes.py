"""Component crashes, injected with the test-only switch ``REMOTE_EXECUTOR_TEST_FAULTS``.

A Reporter or QueuePoller that crashes is restarted with backoff and the recipe that runs
meanwhile is untouched: it runs once, to the end, and its message stays held (a second
executor polls the same queue all along and never gets it). A child that keeps crashing
escalates to its pool supervisor, which the root restarts; a pool that keeps failing is parked
(not ready, with the reason) while the other pools serve, and only when every pool is parked
does the process exit with code 3 for systemd / Kubernetes to restart.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from tests.faults.harness import EXTEND, Executor, FaultWorld, wait_until

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"


def test_reporter_and_poller_crashes_leave_the_running_recipe_alone(world: FaultWorld) -> None:
    world.start_cp()
    sqs = world.sqs_proxy()
    faults = "pool:default/reporter@Progress*2,pool:default/poller@Housekeeping*1"
    a = world.executor("a", env={FAULTS: faults})
    request = world.submit()
    recipe = world.ledger.wait(request.run_id, "start")[0]["pid"]
    b = world.executor("b")  # would run the request if a's message ever became visible
    a.wait_log("restarting in")
    wait_until(lambda: a.count("crashed: RuntimeError: injected fault") == 3, 30, "three injected crashes")
    a.wait_log("keeping 1 message(s) held by the previous poller")
    after_restart = sqs.seen[EXTEND]
    wait_until(lambda: sqs.seen[EXTEND] - after_restart >= 3, 30, "a lease's worth of extensions after")
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"})["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted")

    restarted = {m.group(1) for r in a.logged(lambda r: "restarting in" in r["msg"])
                 if (m := re.match(r"(\w+) ended", r["msg"]))}
    assert restarted == {"reporter", "poller"}
    assert [e["pid"] for e in world.ledger.events(request.run_id, "start")] == [recipe]  # ran once
    assert not world.ledger.events(request.run_id, "term")  # never signalled
    assert not b.logged(lambda r: r.get("request") == request.run_id)


def test_a_crash_loop_escalates_to_the_pool_and_the_root_restarts_it(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", env={FAULTS: "pool:default/leaser*6"})  # one more than the pool allows
    a.wait_log("giving up", timeout_s=60)  # the pool supervisor escalates ...
    a.wait_log("pool:default ended")  # ... and the root restarts the whole pool
    a.wait_log("lease obtained")
    request = world.submit()
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"})["status"] == "SUCCESS"
    assert a.running


def test_a_lone_pool_that_keeps_failing_is_parked_and_with_nothing_left_the_process_exits_3(
    world: FaultWorld,
) -> None:
    world.start_cp()
    a = world.executor("a", env={FAULTS: "pool:default"})  # the pool supervisor fails at every start
    assert a.wait(90) == 3
    a.wait_log("pool:default parked: keeps failing")
    a.wait_log("the root supervisor gave up")
    assert "nothing useful is left running" in a.wait_log("the root supervisor gave up")["msg"]
    assert a.count("restarting in") == 3  # ROOT_POLICY: 3 restarts, then parked


def test_a_pool_that_keeps_failing_is_parked_while_another_pool_serves(world: FaultWorld) -> None:
    world.start_cp(pools=("default", "bad"))
    a = two_pool_executor(world, env={FAULTS: "pool:bad"})  # only pool bad's supervisor fails
    health = re.search(r"http://[\d.]+:\d+", a.wait_log("health and metrics on")["msg"])
    assert health is not None
    parked = a.wait_log("pool:bad parked: keeps failing", timeout_s=60)["msg"]
    assert re.search(r"; next start in 3\d\ds$", parked)  # ROOT_POLICY: 5 minutes and jitter
    status, ready = get_json(health.group(0) + "/readyz")
    assert status == 503 and ready["pools"]["bad"]["ready"] is False
    assert ready["pools"]["bad"]["reason"].startswith("parked: keeps failing (RuntimeError: injected")
    request = world.submit()  # pool default serves as if nothing happened
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"})["status"] == "SUCCESS"
    assert get_json(health.group(0) + "/healthz")[0] == 200  # parked is not dead
    assert a.running
    restarted = [r["msg"] for r in a.logged(lambda r: "restarting in" in r["msg"])]
    assert len(restarted) == 3 and all(m.startswith("pool:bad ended") for m in restarted)
    assert not a.logged(lambda r: "pool:default" in r["msg"] and "ended" in r["msg"])


def two_pool_executor(world: FaultWorld, env: dict[str, str]) -> Executor:
    """An executor with pools ``default`` and ``bad``, set up as ``world.executor`` sets up one."""
    pool = {
        "max_workers": 2, "poll_wait_s": 1, "visibility_s": 10, "progress_interval_s": 1,
        "signal_poll_interval_s": 1, "limits": {"kill_grace_s": 2},
        "venvs": {"bundled_root": str(world.venv_root), "dependency_resolution": False},
        "secrets": {"stores": ["env", "datahub"]},
    }
    config = {
        "gms": {"url": world.live_cp.gms_url, "timeout_s": 2.0},
        "state_dir": str(world.tmp / "state-two-pools"),
        "logging": {"format": "json", "level": "INFO"},
        "observability": {"host": "127.0.0.1", "port": 0},
        "shutdown": {"drain_s": 3.0, "kill_grace_s": 2},
        "pools": [{"id": "default", **pool}, {"id": "bad", **pool}],
    }
    executor = Executor(world, "two-pools", config, {"DATAHUB_TELEMETRY_ENABLED": "false", **env})
    world.executors.append(executor)
    return executor


def get_json(url: str) -> tuple[int, Any]:
    """(status, parsed body) of a GET on the executor's health endpoint."""
    response = requests.get(url, timeout=5)
    return response.status_code, response.json()
