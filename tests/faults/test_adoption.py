"""A runner crash loses nothing and reruns nothing: the next runner adopts the live Tasks.

The Tasks belong to the pool (its task book), not to the runner instance that started them.
When the runner crashes, its Tasks run on untouched; the new runner adopts them: their weights
count against capacity, a notice told while no runner was up (a Task's exit) is handled from
the book, and a KILL or the shutdown still reaches them. The ledger shows each recipe started
once and was never signalled, except by the KILL or the shutdown the test sends.
"""

from __future__ import annotations

import signal

from tests.faults.harness import INTERRUPTED, TERMINAL, FaultWorld, Request, wait_until

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"


def _finals(world: FaultWorld, request: Request) -> list[str]:
    """The request's terminal results in GMS, in order (interruptions included)."""
    return [str(h.get("status")) for h in world.history(request.urn) if h.get("status") in TERMINAL]


def _ran_once_untouched(world: FaultWorld, request: Request) -> None:
    assert len(world.ledger.events(request.run_id, "start")) == 1
    assert not world.ledger.events(request.run_id, "term")
    assert world.ledger.duplicates(request.run_id) == 0


def test_a_runner_crash_leaves_a_running_recipe_alone_and_its_slot_held(world: FaultWorld) -> None:
    """The runner crashes on its first KILL poll while one recipe runs and a short one ends on
    its own beside it (an orderly end needs no runner: the Task's ``RunnerLink`` gives its slot
    back; when it ends in the instant of the adoption is not held here: an orderly end racing
    the adoption on one entry is ``tests/unit/test_runner_capacity.py``'s). The short result is
    delivered once, and the recipe running beside it runs on, adopted, holding its slot: of two
    more requests only one starts beside it."""
    world.start_cp()
    a = world.executor("a", max_workers=2, env={FAULTS: "pool:default/runner@PollSignals*1"})
    running = world.submit()
    world.ledger.wait(running.run_id, "start")
    short = world.submit(duration_s=0.5)  # ends on its own while the other runs
    a.wait_log("injected fault at root/pool:default/runner on handling PollSignals")
    a.wait_log("task(s) of the previous runner")  # the running one, and the short one if still live
    assert world.wait_status(short, {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"

    third, fourth = world.submit(), world.submit()
    first = wait_until(lambda: [r for r in (third, fourth) if world.ledger.events(r.run_id, "start")],
                       60, "one more request to start beside the adopted one")[0]
    second = fourth if first is third else third
    progress = len(world.history(running.urn))
    wait_until(lambda: len(world.history(running.urn)) >= progress + 3, 30,
               "three more progress reports of the adopted task (time for a wrong receive)")
    assert not world.ledger.events(second.run_id, "start")  # no slot: the adopted task holds it
    assert world.queue_counts() == (1, 2)

    world.open_gate(running)
    world.ledger.wait(second.run_id, "start", timeout_s=60)  # the adopted task's slot came back
    for request in (first, second):
        world.open_gate(request)
    for request in (running, short, first, second):
        assert world.wait_status(request, {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"
        assert _finals(world, request) == ["SUCCESS"], request.run_id  # no interruption
        _ran_once_untouched(world, request)
    ended = world.ledger.events(running.run_id, "end")[0]["t"]
    assert world.ledger.events(second.run_id, "start")[0]["t"] >= ended
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "every message deleted")
    assert a.count("crashed: RuntimeError: injected fault") == 1 and a.running


def test_adopted_tasks_still_end_by_a_kill_and_by_the_shutdown(world: FaultWorld) -> None:
    """The runner crashes while two recipes run; after the adoption a KILL ends one of them
    (CANCELLED) and a SIGTERM interrupts the other, whose message is released, exit code 0."""
    world.start_cp()
    killed, interrupted = world.submit(), world.submit()  # both received long before the first round
    a = world.executor("a", max_workers=2, drain_s=1, env={FAULTS: "pool:default/runner@TasksWanted*1"})
    for request in (killed, interrupted):
        world.ledger.wait(request.run_id, "start")
    a.wait_log("injected fault at root/pool:default/runner on handling TasksWanted")
    a.wait_log("adopting 2 task(s) of the previous runner")
    for request in (killed, interrupted):
        _ran_once_untouched(world, request)  # the crash left both alone

    world.live_cp.ingestion.cancel(killed.urn)
    result = world.wait_status(killed, timeout_s=30)
    assert result["status"] == "CANCELLED" and "KILL" in result.get("report", "")
    assert world.ledger.events(killed.run_id, "term")

    a.signal(signal.SIGTERM)
    assert a.wait(60) == 0
    result = world.result(interrupted.urn)
    assert result is not None and result["status"] == "FAILURE"
    assert str(result["report"]).startswith(INTERRUPTED)
    assert world.ledger.events(interrupted.run_id, "term")
    assert world.queue_counts() == (1, 0)  # released for another executor, not left to lapse
    world.open_gate(interrupted)
    world.executor("b")
    assert world.wait_status(interrupted, {"SUCCESS"})["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "every message deleted")
