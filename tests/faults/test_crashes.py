"""Component crashes, injected with the test-only switch ``REMOTE_EXECUTOR_TEST_FAULTS``.

A Reporter or QueuePoller that crashes is restarted with backoff and the recipe that runs
meanwhile is untouched: it runs once, to the end, and its message stays held (a second
executor polls the same queue all along and never gets it). A child that keeps crashing
escalates to its pool supervisor, which the root restarts; a pool that keeps failing makes
the root give up, and the process exits with code 3 for systemd / Kubernetes to restart.
"""

from __future__ import annotations

import re

from tests.faults.harness import EXTEND, FaultWorld, wait_until

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"


def test_reporter_and_poller_crashes_leave_the_running_recipe_alone(world: FaultWorld) -> None:
    world.start_cp()
    sqs = world.sqs_proxy()
    faults = "pool:default/reporter@Progress*2,pool:default/poller@ExtendLeases*1"
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


def test_a_pool_that_keeps_failing_makes_the_process_exit_3(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", env={FAULTS: "pool:default"})  # the pool supervisor fails at every start
    assert a.wait(90) == 3
    a.wait_log("the root supervisor gave up")
    assert a.count("restarting in") == 3  # ROOT_POLICY: 3 restarts, then give up
