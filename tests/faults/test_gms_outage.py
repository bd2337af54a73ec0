"""GMS outages (DESIGN.md, delivery rules): tasks keep running, results wait in the outbox.

Two tests, because the local control plane cannot show everything in one. With GMS cut off
by a proxy while SQS stays up, the message of a finished request stays held (its lease is
extended) until GMS has the result, and only then is it deleted. With the whole control plane
stopped and started again on the same ports, token and state, the executor rides through: the
running task is untouched, progress reports resume, a result finished during the outage is
delivered from the outbox, and new work flows through a fresh lease. What that second test
cannot show is the message's fate: moto keeps queues in memory, so the restarted control plane
has new, empty queues and the old message (with its receipt handle) is simply gone.
"""

from __future__ import annotations

from tests.faults.harness import EXTEND, FaultWorld, wait_until
from tests.faults.tcpproxy import Mode


def test_gms_unreachable_keeps_the_message_until_the_result_is_accepted(world: FaultWorld) -> None:
    world.start_cp()
    sqs = world.sqs_proxy()
    gms = world.gms_proxy()
    a = world.executor("a", gms_url=gms.url)
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    world.wait_status(request, {"RUNNING"})
    gms.set_mode(Mode.DROP)
    world.open_gate(request)  # it finishes while GMS is unreachable
    world.ledger.wait(request.run_id, "end")
    a.wait_log("not delivered")
    held_from = sqs.seen[EXTEND]

    def held_for_a_lease() -> bool:
        assert world.queue_counts() == (0, 1), "the message must stay held while GMS lacks the result"
        return sqs.seen[EXTEND] - held_from >= 3  # one every third of the lease

    wait_until(held_for_a_lease, 40, "a lease's worth of extensions during the outage", 0.25)
    assert world.result(request.urn)["status"] == "RUNNING"  # type: ignore[index]
    gms.set_mode(Mode.PASS)

    def deleted_only_after_delivery() -> bool:
        counts = world.queue_counts()
        result = world.result(request.urn)
        if counts != (0, 1):  # once the message is gone, GMS must already have the result
            assert result is not None and result["status"] == "SUCCESS", counts
        return counts == (0, 0)

    wait_until(deleted_only_after_delivery, 90, "delivery, then deletion", 0.1)
    assert len(world.ledger.events(request.run_id, "start")) == 1


def test_a_control_plane_restart_is_ridden_out(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a")
    finished, running = world.submit(), world.submit()
    world.ledger.wait(finished.run_id, "start")
    world.ledger.wait(running.run_id, "start")
    world.wait_status(running, {"RUNNING"})
    reports_before = len(world.history(running.urn))

    world.stop_cp()
    mark = a.mark()
    world.open_gate(finished)
    world.ledger.wait(finished.run_id, "end")
    a.wait_log("not delivered", since=mark)  # the result waits in the outbox
    a.wait_log("receive failed", since=mark)
    world.restart_cp()

    assert world.wait_status(finished, {"SUCCESS"}, timeout_s=90)["status"] == "SUCCESS"  # from the outbox
    wait_until(lambda: len(world.history(running.urn)) > reports_before + 2, 30, "progress reports to resume")
    assert world.result(running.urn)["status"] == "RUNNING"  # type: ignore[index]
    world.open_gate(running)
    assert world.wait_status(running, {"SUCCESS"})["status"] == "SUCCESS"
    a.wait_log("lease obtained (rejected)")  # the old keys are unknown to the new control plane
    fresh = world.submit()  # new work flows through the new queue
    world.open_gate(fresh)
    assert world.wait_status(fresh, {"SUCCESS"})["status"] == "SUCCESS"
    for request in (finished, running):
        assert len(world.ledger.events(request.run_id, "start")) == 1
        assert not world.ledger.events(request.run_id, "term")
