"""The runner polls GMS for KILL signals only while its pool has a task (idle CPU).

Seen from outside through the fault switch: a rule crashes the runner the first time it
handles ``PollSignals``, so the crash's log line says when the first poll happened. At rest no
poll comes while the poller makes long poll after long poll (counted by a proxy in front of
SQS); the first task starts the polling, and the runner's crash on it interrupts nothing.
"""

from __future__ import annotations

from tests.faults.harness import Executor, FaultWorld, wait_until
from tests.faults.tcpproxy import TcpProxy

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"
RUNNER = "root/pool:default/runner"
RECEIVE = b"ReceiveMessage"
CRASHED = "crashed: RuntimeError"


def _wait_receives(sqs: TcpProxy, a: Executor, receives: int) -> None:
    """Return after the poller has made ``receives`` more long polls (1 s each on an empty
    queue): the clock of an executor at rest, where nothing else happens."""
    start = sqs.seen[RECEIVE]

    def counted() -> bool:
        assert a.running, a.text()[-2000:]
        return sqs.seen[RECEIVE] - start >= receives

    wait_until(counted, 60, f"{receives} receives of the poller", tick_s=0.1)


def test_no_kill_poll_at_rest_and_one_with_the_first_task(world: FaultWorld) -> None:
    world.start_cp()
    sqs = world.sqs_proxy()
    sqs.watch(RECEIVE)
    a = world.executor("a", signal_poll_interval_s=0.2, env={FAULTS: "pool:default/runner@PollSignals*1"})
    a.wait_log("executor started")
    _wait_receives(sqs, a, 6)  # 5 s and more at rest: 25 and more poll intervals
    assert a.count(CRASHED) == 0, "the runner polled for KILL signals while the pool had no task"

    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    crash = a.wait_log(CRASHED, timeout_s=30)  # the first task started the polling
    assert crash.get("component") == RUNNER, crash
    world.open_gate(request)
    assert world.wait_status(request, timeout_s=60)["status"] == "SUCCESS"  # the runner's crash spared it
    assert world.ledger.duplicates(request.run_id) == 0
