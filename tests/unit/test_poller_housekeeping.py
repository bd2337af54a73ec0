"""The poller's housekeeping rides on its poll cycle (``executor.pool.poll_duties``).

Real QueuePoller actors. With messages held and a long poll running against moto (a lease of
10 s, the long poll up to 20 s), the receive's wait ends by each extension, so the held message
never becomes visible to another consumer; at rest nothing but the long poll runs (no timer of
the poller fires before its safety net's); and a lost ``Poll`` does not stop the loop for good:
the safety net replaces it. The deadlines themselves are checked on ``Duties`` with a given clock.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pykka
import pytest
from loguru import logger

from executor.config import ExecutorConfig
from executor.pool import poll_loop
from executor.pool import poller as poller_module
from executor.pool.context import PoolContext
from executor.pool.inflight import InFlight
from executor.pool.messages import LEASER, LeaseGranted, Poll
from executor.pool.poll_duties import EARLY_S, SAFETY_NET_S, Duties
from executor.pool.poller import QueuePoller
from executor.queue.sqs import SqsQueue
from executor.supervision import ChildContext, Directory
from tests.adapters.conftest import make_lease, moto_endpoint  # noqa: F401 (a fixture)
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Gauges, Health, Inbox, ScriptedQueue

URN = "urn:li:dataHubExecutionRequest:held"


class CountingPoller(QueuePoller):
    """A QueuePoller that counts the messages it handles by class, and drops the loop's
    ``Poll`` number ``drop`` (as a lost tell would be)."""

    def __init__(self, *args: Any, drop: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: Counter[str] = Counter()
        self.drop = drop

    def handle(self, message: Any) -> Any:
        self.handled[type(message).__name__] += 1
        if isinstance(message, Poll) and message.seq and message.seq == self.drop:
            return None  # lost on its way
        return super().handle(message)


def _pool(tmp_path: Path, visibility_s: int, poll_wait_s: int) -> PoolContext:
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
        "pools": [{"id": "default", "visibility_s": visibility_s, "poll_wait_s": poll_wait_s}],
    })
    return PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=Health())


@pytest.fixture
def started() -> Iterator[list[pykka.ActorRef[Any]]]:
    """Actors a test starts (it appends them); each stopped after the test."""
    refs: list[pykka.ActorRef[Any]] = []
    yield refs
    for ref in reversed(refs):
        if ref.is_alive():
            ref.stop(block=True, timeout=30)


def _start(pool: PoolContext, refs: list[pykka.ActorRef[Any]], **kwargs: Any) -> pykka.ActorRef[Any]:
    directory = Directory()
    leaser = Inbox.start()
    refs.append(leaser)
    directory.put(LEASER, leaser)
    ref = CountingPoller.start(ChildContext("poller", "root/pool:default/poller", 1, None, directory),
                               pool, **kwargs)
    refs.append(ref)
    return ref


class RecordingSqs(SqsQueue):
    """The real queue client, recording the waits of its receives and its extensions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[int] = []
        self.extensions = 0

    def receive(self, max_messages: int, wait_s: int, visibility_s: int) -> Any:
        self.waits.append(wait_s)
        return super().receive(max_messages, wait_s, visibility_s)

    def extend(self, receipt_handle: str, visibility_s: int) -> None:
        super().extend(receipt_handle, visibility_s)
        self.extensions += 1


def test_a_held_message_stays_hidden_while_the_long_poll_runs(
    tmp_path: Path, moto_endpoint: str, started: list[Any], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    """A lease of 10 s and a long poll of up to 20 s: each receive ends by the next extension
    (a third of the lease after the last), so the message is never received again, by anyone."""
    admin = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1",
                         aws_access_key_id="admin", aws_secret_access_key="admin")
    url = admin.create_queue(QueueName=f"pool-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    admin.send_message(QueueUrl=url, MessageBody=json.dumps({"urn": URN}))
    got = admin.receive_message(QueueUrl=url, VisibilityTimeout=10)["Messages"][0]
    pool = _pool(tmp_path, visibility_s=10, poll_wait_s=20)
    pool.in_flight.put(InFlight(URN, got["MessageId"], got["ReceiptHandle"]))  # held, as if received
    queues: list[RecordingSqs] = []

    def recording(*args: Any, **kwargs: Any) -> RecordingSqs:
        queues.append(RecordingSqs(*args, **kwargs))
        return queues[-1]

    monkeypatch.setattr(poller_module, "SqsQueue", recording)
    ref = _start(pool, started)
    ref.tell(LeaseGranted(make_lease(url)))
    queue = wait_until(lambda: queues[0] if queues else None, 10, "the poller's queue")
    try:
        while queue.extensions < 5:  # the first at the lease, then one every ~3.3 s: > 13 s
            seen = admin.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            assert not seen, f"the held message was handed out after {queue.extensions} extension(s)"
            assert ref.is_alive()
    finally:
        admin.delete_queue(QueueUrl=url)
    held = pool.in_flight.get(URN)  # had it come back, the poller's own receive would have renewed it
    assert held is not None and (held.receipt_handle, held.receive_count) == (got["ReceiptHandle"], 1)
    waits = list(queue.waits)
    assert waits and max(waits) <= 10 // 3, waits  # the long poll was cut to the extension ...
    assert len(waits) <= queue.extensions + 3, waits  # ... to it, not into a loop of short ones


def test_at_rest_no_timer_of_the_poller_fires_before_the_safety_net(
    tmp_path: Path, started: list[Any],
) -> None:
    """Nothing held, the loop receiving: over more than a third and a half of a 10 s lease (when
    the extension and reconciliation timers used to fire) and past the depth's interval, the
    poller handles nothing but its receives, and its one timer is the safety net's."""
    pool = dataclasses.replace(_pool(tmp_path, visibility_s=10, poll_wait_s=1), metrics=Gauges())
    ref = _start(pool, started)
    queue = ScriptedQueue({})
    ref.proxy().queue = queue
    ref.tell(Poll())
    began = time.monotonic()
    wait_until(lambda: time.monotonic() - began > 6 and queue.receives >= 20, 30, "receives for 6 s")
    proxy = ref.proxy()
    handled = dict(proxy.handled.get(timeout=5))
    assert set(handled) <= {"Poll", "Beat"}, handled  # the base class's heartbeat is not the poller's
    timer_due = proxy.timer.get(timeout=5).due
    # The safety net's timer falls due on the process's common tick of its period, 15-75 s after
    # it was armed; an extension or a reconciliation would fall due off that grid, within a lease.
    assert timer_due is not None and timer_due % SAFETY_NET_S == 0 and timer_due > time.monotonic()


def test_a_lost_poll_is_replaced_by_the_safety_net(
    tmp_path: Path, started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a lost ``Poll`` left the loop stopped for good (only reported not ready)."""
    monkeypatch.setattr(poll_loop, "LOST_POLL_S", 0.5)
    ref = _start(_pool(tmp_path, visibility_s=10, poll_wait_s=1), started, drop=3, safety_net_s=1.0)
    queue = ScriptedQueue({})
    ref.proxy().queue = queue
    ref.tell(Poll())
    # The third Poll is lost after the second receive: the loop goes on only if it is replaced.
    wait_until(lambda: queue.receives >= 8, 15, "the loop to receive again")
    assert ref.proxy().handled.get(timeout=5)["Housekeeping"] >= 1  # the safety net's doing


class Teller:
    """Stands in for the poller under a ``PollLoop``: keeps what the loop tells it."""

    def __init__(self) -> None:
        self.actor_ref = self
        self.told: list[Poll] = []

    def tell(self, message: Poll) -> None:
        self.told.append(message)

    def tell_self_after(self, delay_s: float, message: Poll) -> None:
        self.told.append(message)


def test_a_stale_poll_is_ignored_so_two_loops_never_run() -> None:
    """The lost ``Poll`` turning up after its replacement starts no second loop."""
    teller = Teller()
    loop = poll_loop.PollLoop(teller)  # type: ignore[arg-type]
    loop.schedule(0)
    loop.schedule(0)  # one is pending: no second
    assert teller.told == [Poll(1)]
    loop.replace_lost(time.monotonic() + 1, logger)  # not overdue yet: kept
    loop.schedule(0)
    assert teller.told == [Poll(1)]
    loop.replace_lost(time.monotonic() + poll_loop.LOST_POLL_S + 1, logger)  # overdue: lost
    loop.schedule(0)
    assert teller.told == [Poll(1), Poll(2)]
    assert not loop.take(Poll(1))  # the lost one, late: ignored
    assert loop.take(Poll(2))
    assert loop.take(Poll())  # a nudge from outside is always taken


# -- the deadlines -----------------------------------------------------------------------------
def test_the_held_clocks_run_only_while_messages_are_held() -> None:
    duties = Duties(visibility_s=30, depth=False)
    assert duties.next_due(with_depth=True) is None  # at rest: only the safety net
    duties.sync(held=True, now=100.0)
    assert duties.next_due(with_depth=False) == 110.0 - EARLY_S  # the extension, a third of 30 s
    assert not duties.extend_due(108.9) and duties.extend_due(109.0)
    assert duties.reconcile_due(114.0) and not duties.reconcile_due(113.9)
    duties.sync(held=False, now=105.0)
    assert duties.next_due(with_depth=True) is None


def test_the_long_poll_ends_by_the_next_extension() -> None:
    duties = Duties(visibility_s=30, depth=False)
    assert duties.receive_wait(100.0, 20) == 20  # nothing held: the full wait
    duties.sync(held=True, now=100.0)
    assert duties.receive_wait(100.0, 20) == 10
    assert duties.receive_wait(104.5, 20) == 5  # whole seconds, never past the extension
    duties.extended(109.5)
    assert duties.receive_wait(109.5, 20) == 10


def test_the_depth_is_due_only_for_a_loop_that_does_not_receive() -> None:
    duties = Duties(visibility_s=30, depth=True)
    due = duties.next_due(with_depth=True)
    assert due is not None and due > time.monotonic()
    assert duties.next_due(with_depth=False) is None
    duties.depth_known(time.monotonic() + 100)  # an empty receive: the depth is 0, postponed
    assert not duties.depth_due(time.monotonic() + 100)
