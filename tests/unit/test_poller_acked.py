"""Messages acknowledged close together are deleted in one call (``executor.pool.acked``).

A real QueuePoller actor holds three messages; a stand-in queue records its delete calls (the
batch delete itself runs against moto in ``tests/adapters/test_sqs.py``). Acknowledgements told
back to back make one ``DeleteMessageBatch``; one still waiting when the poller stops is deleted
then, not left to reappear; a message stays in the in-flight book until its delete is made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.pool.context import PoolContext
from executor.pool.inflight import InFlight
from executor.pool.messages import LEASER, Acknowledge
from executor.pool.poller import QueuePoller
from executor.supervision import ChildContext, Directory
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Health, Inbox

URN = "urn:li:dataHubExecutionRequest:r{}"


class DeletingQueue:
    """Stands in for ``SqsQueue``: records each batch delete (single deletes are not expected)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def delete_batch(self, receipt_handles: Sequence[str]) -> list[tuple[str, str]]:
        with self.lock:
            self.batches.append(list(receipt_handles))
        return []

    def close(self) -> None:
        """Nothing to close."""

    def interrupt(self) -> None:
        """Nothing waits here (the poller's stop calls it)."""


@pytest.fixture
def poller(tmp_path: Path) -> Iterator[tuple[pykka.ActorRef[Any], PoolContext]]:
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
        "pools": [{"id": "default", "visibility_s": 120, "poll_wait_s": 1}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=Health())
    for n in range(3):
        pool.in_flight.put(InFlight(URN.format(n), f"m{n}", f"h{n}"))
    directory = Directory()
    leaser = Inbox.start()
    directory.put(LEASER, leaser)
    ref = QueuePoller.start(ChildContext("poller", "root/pool:default/poller", 1, None, directory), pool)
    try:
        yield ref, pool
    finally:
        if ref.is_alive():
            ref.stop(block=True, timeout=10)
        leaser.stop(block=True, timeout=10)


def test_acknowledgements_close_together_make_one_delete_call(poller: Any) -> None:
    ref, pool = poller
    queue = DeletingQueue()
    ref.proxy().queue = queue
    for n in range(3):
        ref.tell(Acknowledge(URN.format(n)))
    wait_until(lambda: queue.batches, 10, "the acknowledged messages to be deleted")
    assert queue.batches == [["h0", "h1", "h2"]]
    assert len(pool.in_flight) == 0


def test_an_acknowledged_message_stays_held_until_deleted_and_a_stop_deletes_it(poller: Any) -> None:
    ref, pool = poller
    queue = DeletingQueue()
    ref.proxy().queue = queue
    ref.ask(Acknowledge(URN.format(1)), timeout=5)
    assert {item.urn for item in pool.in_flight.items()} == {URN.format(n) for n in range(3)}
    ref.stop(block=True, timeout=10)  # before the batch's wait is over
    assert queue.batches == [["h1"]]
    assert [item.urn for item in pool.in_flight.items()] == [URN.format(0), URN.format(2)]
