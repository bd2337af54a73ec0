"""SIGTERM (DESIGN.md, delivery rules): drain, then interrupt, report, release, exit 0.

The executor stops receiving at once; running tasks get ``drain_s`` to finish; what still runs
after that is stopped and reported as an interruption (a FAILURE whose report starts with the
marker, which another executor may overwrite by running the request again); its message is
released (visibility 0, not left to lapse); the last presence record says
``executorStopped``; the exit code is 0. A second SIGTERM skips the rest of the drain.
"""

from __future__ import annotations

import signal

from tests.faults.harness import INTERRUPTED, FaultWorld, wait_until

LONG_VISIBILITY_S = 120
"""Long enough that a message seen again within the test was released, not left to lapse."""


def presence_stopped(world: FaultWorld) -> list[bool]:
    return [bool(value.get("executorStopped"))
            for _, _, value in world.live_cp.list_aspects("dataHubRemoteExecutor")]


def test_sigterm_drains_then_interrupts_releases_and_exits_0(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", drain_s=4, visibility_s=LONG_VISIBILITY_S)
    finishing, interrupted = world.submit(), world.submit()
    world.ledger.wait(finishing.run_id, "start")
    world.ledger.wait(interrupted.run_id, "start")

    a.signal(signal.SIGTERM)
    a.wait_log("draining: 2 task(s) running")
    late = world.submit()  # arrives after the signal: this executor must not take it
    world.open_gate(finishing)  # finishes within the drain
    assert world.wait_status(finishing, {"SUCCESS"})["status"] == "SUCCESS"
    assert a.wait(60) == 0

    result = world.result(interrupted.urn)
    assert result is not None and result["status"] == "FAILURE"
    assert result["report"].startswith(INTERRUPTED)
    assert world.ledger.events(interrupted.run_id, "term")  # its process group got SIGTERM
    assert not a.logged(lambda r: r.get("request") == late.run_id)  # never received
    assert presence_stopped(world) == [True]
    assert world.queue_counts() == (2, 0)  # the released message and the late one, both visible now

    b = world.executor("b", visibility_s=LONG_VISIBILITY_S)  # another executor runs both
    world.open_gate(interrupted)
    world.open_gate(late)
    assert world.wait_status(interrupted, {"SUCCESS"})["status"] == "SUCCESS"
    assert world.wait_status(late, {"SUCCESS"})["status"] == "SUCCESS"
    statuses = [r["status"] for r in world.history(interrupted.urn) if r["status"] != "RUNNING"]
    assert statuses == ["FAILURE", "SUCCESS"]  # the interruption was overwritten by the rerun
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "every message to be deleted")
    assert b.count("starting RUN_INGEST") == 2


def test_a_second_sigterm_skips_the_drain(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", drain_s=600, visibility_s=LONG_VISIBILITY_S)
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    a.signal(signal.SIGTERM)
    a.wait_log("draining: 1 task(s) running")
    a.signal(signal.SIGTERM)
    a.wait_log("stopping now")
    assert a.wait(60) == 0  # far sooner than the 600 s drain
    result = world.result(request.urn)
    assert result is not None and result["report"].startswith(INTERRUPTED)
    assert world.queue_counts() == (1, 0)  # released for another executor

    world.executor("b", visibility_s=LONG_VISIBILITY_S)
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"})["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted")
