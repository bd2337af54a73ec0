"""Executor killed with SIGKILL mid-task (DESIGN.md, delivery rules).

Its recipe dies with it (parent-death signal), what the recipe forked is killed by the next
executor that starts on the host, the message reappears after its lease and another executor
runs the request to a terminal result, never while the first run still lives. A result that
was finished but not delivered when the executor died is delivered from the outbox by the
next executor on the same state dir, and the redelivered message is then deleted unrun.
"""

from __future__ import annotations

import psutil
import pytest

from tests.faults.harness import FaultWorld, wait_until
from tests.faults.tcpproxy import Mode


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.alone  # b must be the executor that reaps the grandchild: none may start meanwhile
def test_sigkill_mid_task_hands_the_request_to_another_executor(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a")
    request = world.submit(child=True)
    recipe = world.ledger.wait(request.run_id, "start")[0]["pid"]
    grandchild = world.ledger.wait(request.run_id, "child")[0]["child"]
    a.kill9()
    wait_until(lambda: not alive(recipe), 10, "the recipe to die with its executor")

    b = world.executor("b")  # another executor on this host: it reaps what the recipe forked
    b.wait_log("leftover recipe process")
    wait_until(lambda: not alive(grandchild), 10, "the recipe's grandchild to be killed")
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"}, timeout_s=60)["status"] == "SUCCESS"

    starts = world.ledger.events(request.run_id, "start")
    assert len(starts) == 2 and starts[1]["pid"] != recipe
    assert world.ledger.duplicates(request.run_id) == 0  # never two live runs at once
    assert len(world.ledger.events(request.run_id, "end")) == 1
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted")


def test_a_finished_result_is_delivered_after_a_restart_and_the_message_deleted_unrun(
    world: FaultWorld,
) -> None:
    cp = world.start_cp()
    gms = world.proxy(int(cp.gms_url.rsplit(":", 1)[1]), "gms")
    a = world.executor("a", gms_url=gms.url)
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    world.wait_status(request, {"RUNNING"})
    gms.set_mode(Mode.DROP)  # GMS unreachable from here on: the result can only go to the outbox
    world.open_gate(request)
    world.ledger.wait(request.run_id, "end")
    a.wait_log("not delivered")
    a.kill9()
    outbox = world.tmp / "state-a" / "pools" / "default" / "outbox"
    assert any(outbox.glob("*.json")), "the finished result should wait in the outbox"
    assert world.result(request.urn)["status"] == "RUNNING"  # type: ignore[index]

    gms.set_mode(Mode.PASS)
    again = world.executor("a-restarted", state="a", gms_url=gms.url)  # same host, same outbox
    assert world.wait_status(request, {"SUCCESS"}, timeout_s=30)["status"] == "SUCCESS"
    again.wait_log("not running it again", timeout_s=60)  # the message came back after its lease
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted")
    assert len(world.ledger.events(request.run_id, "start")) == 1
    # delivered: no record left, only emptied files kept for the next results (``spare_files``)
    assert all(p.name.startswith(".spare-") and p.stat().st_size == 0 for p in outbox.iterdir())
