"""The poller's pause before a receive for prefetch slots only (``executor.pool.prefetch_pause``).

A real QueuePoller with a real ``SqsQueue`` on moto over loopback HTTP, a pool of one worker
with prefetch 1 and a stand-in runner that keeps what it is told. Once a message is handed over,
only the prefetch slot is free: the next message stays on the queue while the pause holds, and
so does the delete of a message whose result was delivered meanwhile; a ``Capacity`` with a slot
a task can start in ends the pause at once (the delete, then the receive), and without one the
pause's own timer does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from executor.config import ExecutorConfig
from executor.datahub.envelope import encode_envelope
from executor.pool.context import PoolContext
from executor.pool.messages import LEASER, RUNNER, Acknowledge, Capacity, LeaseGranted, RunRequest
from executor.pool.poller import QueuePoller
from executor.supervision import ChildContext, Directory
from tests.adapters.conftest import make_lease
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Inbox
from tests.unit.test_poller_stop import Beats, _actor
from tests.unit.test_poller_stop import queue_url as queue_url  # the fixture: moto on loopback


class Harness:
    """The poller, its stand-in runner, and a client that sends to its queue."""

    def __init__(self, tmp_path: Path, queue_url: str) -> None:
        config = ExecutorConfig.model_validate({
            "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
            "pools": [{"id": "default", "max_workers": 1, "prefetch": 1, "visibility_s": 120,
                       "poll_wait_s": 20}],
        })
        pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                           health=Beats())
        directory = Directory()
        self.siblings = {LEASER: Inbox.start(), RUNNER: Inbox.start()}
        for name, sibling in self.siblings.items():
            directory.put(name, sibling)
        ctx = ChildContext("poller", "root/pool:default/poller", 1, None, directory)
        self.ref = QueuePoller.start(ctx, pool)
        self.epoch = _actor(self.ref).epoch
        endpoint = "/".join(queue_url.split("/")[:3])
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                                aws_access_key_id="admin", aws_secret_access_key="admin")
        self.queue_url = queue_url
        self.ref.tell(LeaseGranted(make_lease(queue_url)))

    def send(self) -> str:
        urn = f"urn:li:dataHubExecutionRequest:{uuid.uuid4()}"
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=encode_envelope(urn, "default"))
        return urn

    def handed_over(self) -> list[str]:
        received = self.siblings[RUNNER].proxy().received.get(timeout=5)
        return [m.urn for m in received if isinstance(m, RunRequest)]

    def told(self, capacity: Capacity) -> None:
        """Tell the poller ``capacity`` and wait until it has taken it in."""
        self.ref.tell(capacity)
        wait_until(lambda: _actor(self.ref).runner_free == capacity.free_slots, 10, "the capacity taken in")

    def close(self) -> None:
        self.ref.stop(block=True, timeout=30)
        for sibling in self.siblings.values():
            sibling.stop(block=True, timeout=10)
        self.sqs.close()


@pytest.fixture
def harness(tmp_path: Path, queue_url: str) -> Iterator[Harness]:
    running = Harness(tmp_path, queue_url)
    try:
        yield running
    finally:
        running.close()


def _take_first(harness: Harness) -> str:
    """Free: one slot and the prefetch one; the first message is received and handed over."""
    harness.told(Capacity(2, "runner-1", harness.epoch, 0))
    first = harness.send()
    wait_until(lambda: first in harness.handed_over(), 15, "the first message to be handed over")
    return first


@pytest.mark.timeout(90)
def test_a_slot_freed_ends_the_pause(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("executor.pool.poller.PREFETCH_PAUSE_S", 600.0)  # only a Capacity ends it here
    first = _take_first(harness)
    second = harness.send()
    # The runner took the first: the prefetch slot alone is free. A poller without the pause
    # long-polls at once and hands the second over before it takes this Capacity in.
    harness.told(Capacity(1, "runner-1", harness.epoch, 1))
    assert harness.handed_over() == [first]
    # The first ended (a new runner count): a task can start, so the receive is made now.
    harness.told(Capacity(2, "runner-2", harness.epoch, 0))
    wait_until(lambda: second in harness.handed_over(), 15, "the second message to be handed over")


@pytest.mark.timeout(90)
def test_settles_wait_for_the_end_of_the_pause(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous task's result delivered as the next message came: its delete waits until
    the tasks just handed over have started (the pause), then goes out before the receive."""
    monkeypatch.setattr("executor.pool.poller.PREFETCH_PAUSE_S", 600.0)
    first = _take_first(harness)
    harness.ref.tell(Acknowledge(first))
    harness.told(Capacity(1, "runner-1", harness.epoch, 1))  # taken in after the Acknowledge
    assert _actor(harness.ref).in_flight.get(first) is not None  # held: not deleted yet
    harness.told(Capacity(2, "runner-2", harness.epoch, 0))  # a slot a task can start in: resume
    wait_until(lambda: _actor(harness.ref).in_flight.get(first) is None, 15, "the first message settled")
    attributes = harness.sqs.get_queue_attributes(
        QueueUrl=harness.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"  # deleted, not just dropped


@pytest.mark.timeout(90)
def test_the_paused_receive_comes_with_its_timer(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("executor.pool.poller.PREFETCH_PAUSE_S", 0.2)
    first = _take_first(harness)
    second = harness.send()
    # No Capacity after the first: the prefetch slot is filled once the pause is over.
    wait_until(lambda: second in harness.handed_over(), 15, "the second message to be handed over")
    assert harness.handed_over() == [first, second]
