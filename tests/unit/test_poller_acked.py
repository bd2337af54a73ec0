"""Messages acknowledged close together are deleted in one call (``executor.pool.acked``).

A real QueuePoller actor holds three messages; a stand-in queue records its calls in order (the
batch delete itself runs against moto in ``tests/adapters/test_sqs.py``), and its receive blocks
as a long poll does until the test ends it or the stop cuts it. The batch's wait is made long, so
a delete comes only from a full batch, the stop, a new lease or a test's own timer message,
never from the clock, unless a test makes it 0. Acknowledgements told back to back make one
``DeleteMessageBatch``; one still waiting when the poller stops is deleted then; a message stays
in the in-flight book until its delete is made; a receive made while deletes wait for their
time waits a second at most, and one made after their time makes them first; a stale timer
leaves the next batch waiting; deletes waiting while the lease is lost are kept and made
under the next lease; and a stopping poller whose SQS does not answer makes one delete call,
not one per batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pykka
import pytest
from loguru import logger

from executor.config import ExecutorConfig
from executor.errors import TransportError
from executor.pool import acked as acked_module
from executor.pool import poller as poller_module
from executor.pool.acked import Acked, DeleteAcked
from executor.pool.context import PoolContext
from executor.pool.inflight import InFlight, InFlightBook
from executor.pool.messages import LEASER, Acknowledge, LeaseGranted, LeaseLost, Poll
from executor.pool.poller import QueuePoller
from executor.supervision import ChildContext, Directory
from tests.adapters.conftest import make_lease
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Health, Inbox

URN = "urn:li:dataHubExecutionRequest:r{}"


class Beats(Health):
    """``Health`` that also lets an ended actor go (the poller's teardown calls ``forget``)."""

    def forget(self, component: str) -> None:
        """Nothing is watched here."""


class RecordingQueue:
    """Stands in for ``SqsQueue``: records its calls in order; a receive blocks for its wait
    (empty) until the test ends it or the stop interrupts it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.ends = [threading.Event() for _ in range(64)]
        self.receives = 0
        self.waits: list[int] = []

    def delete_batch(self, receipt_handles: Sequence[str]) -> list[tuple[str, str]]:
        with self.lock:
            self.calls.append(("delete", list(receipt_handles)))
        return []

    def extend(self, receipt_handle: str, visibility_s: int) -> None:
        with self.lock:
            self.calls.append(("extend", receipt_handle))

    def receive(self, wanted: int, wait_s: int, visibility_s: int) -> list[Any]:
        with self.lock:
            self.calls.append(("receive", wanted))
            self.waits.append(wait_s)
            n, self.receives = self.receives, self.receives + 1
        self.ends[min(n, len(self.ends) - 1)].wait(wait_s)
        return []

    def batches(self) -> list[Any]:
        with self.lock:
            return [arg for name, arg in self.calls if name == "delete"]

    def close(self) -> None:
        """Nothing to close."""

    def interrupt(self) -> None:
        for end in self.ends:
            end.set()


@pytest.fixture
def poller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[pykka.ActorRef[Any], PoolContext]]:
    monkeypatch.setattr(poller_module, "DELETE_WAIT_S", 600.0)  # no delete comes from the clock
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
        "pools": [{"id": "default", "visibility_s": 120, "poll_wait_s": 20}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=Beats())
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


def _held(pool: PoolContext) -> set[str]:
    return {item.urn for item in pool.in_flight.items()}


def test_acknowledgements_close_together_make_one_delete_call(poller: Any) -> None:
    ref, pool = poller
    queue = RecordingQueue()
    ref.proxy().queue = queue
    for n in range(3):
        ref.tell(Acknowledge(URN.format(n)))
    ref.stop(block=True, timeout=10)  # the waiting deletes are made at the stop, in one call
    assert queue.batches() == [["h0", "h1", "h2"]]
    assert len(pool.in_flight) == 0


def test_an_acknowledged_message_stays_held_until_deleted_and_a_stop_deletes_it(poller: Any) -> None:
    ref, pool = poller
    queue = RecordingQueue()
    ref.proxy().queue = queue
    ref.ask(Acknowledge(URN.format(1)), timeout=5)
    assert _held(pool) == {URN.format(n) for n in range(3)}
    assert queue.batches() == []
    ref.stop(block=True, timeout=10)
    assert queue.batches() == [["h1"]]
    assert [item.urn for item in pool.in_flight.items()] == [URN.format(0), URN.format(2)]


def test_a_delete_acknowledged_during_a_long_poll_comes_before_the_next_one(
    poller: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the acknowledgement only started the batch's timer, and the next receive (its
    ``Poll`` already queued) held the delete back for a second long poll. Its time has come when
    the first long poll ends (the wait is 0 here): the delete is made before the next one."""
    monkeypatch.setattr(poller_module, "DELETE_WAIT_S", 0.0)
    ref, pool = poller
    queue = RecordingQueue()
    ref.proxy().queue = queue
    ref.tell(Poll())
    wait_until(lambda: queue.receives >= 1, 10, "the first receive to start")
    ref.tell(Acknowledge(URN.format(0)))  # lands while the receive blocks
    queue.ends[0].set()  # the first long poll ends, empty
    wait_until(lambda: queue.receives >= 2, 10, "the second receive to start")
    with queue.lock:
        order = [name for name, _ in queue.calls]
    assert order == ["receive", "delete", "receive"]
    assert queue.batches() == [["h0"]]
    assert _held(pool) == {URN.format(1), URN.format(2)}
    assert queue.waits == [20, 20]


def test_a_receive_while_deletes_wait_for_their_time_is_short_and_leaves_them_waiting(
    poller: Any,
) -> None:
    """One worker's short tasks are acknowledged one every few tens of milliseconds and its
    receives come as often: deleting before each one made a call per message. The receive
    leaves them for the batch's timer and waits a second at most, so a quiet queue's long poll
    does not hold them back."""
    ref, pool = poller
    queue = RecordingQueue()
    ref.proxy().queue = queue
    ref.ask(Acknowledge(URN.format(0)), timeout=5)
    ref.tell(Poll())
    wait_until(lambda: queue.receives >= 1, 10, "the receive to start")
    ref.tell(Acknowledge(URN.format(1)))  # lands while a receive blocks (each ends within 1 s)
    queue.ends[0].set()
    wait_until(lambda: queue.receives >= 2, 10, "the next receive to start")
    with queue.lock:
        waits = list(queue.waits)
    assert waits and all(wait == acked_module.RECEIVE_WAIT_WHILE_ACKED_S for wait in waits)
    assert queue.batches() == [] and _held(pool) == {URN.format(n) for n in range(3)}
    ref.ask(DeleteAcked(0), timeout=5)  # the batch's own timer: both in one call
    assert queue.batches() == [["h0", "h1"]]
    assert _held(pool) == {URN.format(2)}


def test_a_stale_timer_leaves_the_next_batch_waiting(poller: Any) -> None:
    """A batch deleted before its timer fired (full, at a receive or a new lease) leaves that
    timer stale: when it fires it must not cut the next batch's wait short. Here batch 0's timer
    comes again once batch 0 is deleted and batch 1 waits."""
    ref, pool = poller
    queue = RecordingQueue()
    ref.proxy().queue = queue
    ref.ask(Acknowledge(URN.format(0)), timeout=5)
    ref.ask(DeleteAcked(0), timeout=5)  # batch 0 deleted by its timer
    ref.ask(Acknowledge(URN.format(1)), timeout=5)  # batch 1 begins
    ref.ask(DeleteAcked(0), timeout=5)  # batch 0's timer again (as one set before a flush would)
    assert queue.batches() == [["h0"]] and URN.format(1) in _held(pool)
    ref.ask(DeleteAcked(1), timeout=5)
    assert queue.batches() == [["h0"], ["h1"]]


def test_deletes_waiting_when_the_lease_is_lost_are_kept_and_made_under_the_next(
    poller: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the lost lease let them go from the book: neither extended nor deleted, each
    reappeared after its visibility timeout."""
    ref, pool = poller
    granted = RecordingQueue()
    monkeypatch.setattr(poller_module, "SqsQueue", lambda *_args, **_kwargs: granted)
    ref.proxy().queue = RecordingQueue()
    ref.ask(Acknowledge(URN.format(1)), timeout=5)
    ref.ask(LeaseLost("expired"), timeout=5)
    ref.ask(DeleteAcked(), timeout=5)  # the batch's timer fires without a lease
    assert _held(pool) == {URN.format(n) for n in range(3)}  # kept in the book
    ref.ask(LeaseGranted(make_lease("http://127.0.0.1:9/queue/pool")), timeout=5)
    wait_until(lambda: granted.batches(), 10, "the kept delete to be made under the new lease")
    assert granted.batches() == [["h1"]]
    assert _held(pool) == {URN.format(0), URN.format(2)}


def test_a_repeated_acknowledgement_keeps_its_batch_and_its_time() -> None:
    """A repeat (a Reporter's retry) neither sets a second timer nor moves the batch's time on."""
    acked = Acked()
    assert acked.add(URN.format(0)) and not acked.add(URN.format(1))
    began = time.monotonic()
    assert not acked.add(URN.format(0)) and len(acked) == 2
    assert acked.due(began + 1.0, 1.0)  # counted from the first acknowledgement, before ``began``
    assert not acked.due(began - 60.0, 1.0)


class SilentQueue(RecordingQueue):
    """A stopping poller's queue whose SQS does not answer: each batch delete fails."""

    interrupted = True

    def delete_batch(self, receipt_handles: Sequence[str]) -> list[tuple[str, str]]:
        super().delete_batch(receipt_handles)
        raise TransportError("SQS batch delete failed: TimeoutError")


def test_a_stopping_queue_that_does_not_answer_gets_one_delete_call_not_one_per_batch() -> None:
    """Each call would hold the stop for its deadline; what is not deleted comes back after its
    lease and is settled by the reconciliation. Every message leaves the book all the same."""
    book, acked, queue = InFlightBook(), Acked(), SilentQueue()
    for n in range(25):  # three batches' worth
        book.put(InFlight(URN.format(n), f"m{n}", f"h{n}"))
        acked.add(URN.format(n))
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        acked.flush(queue, book, logger)  # type: ignore[arg-type]  # the stand-in
    finally:
        logger.remove(sink)
    assert len(queue.batches()) == 1 and len(acked) == 0 and not book.items()
    assert warnings == ["could not delete the messages of 25 request(s): "
                        "SQS batch delete failed: TimeoutError"]
