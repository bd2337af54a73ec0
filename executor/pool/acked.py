"""Acknowledged messages, deleted together: one ``DeleteMessageBatch`` for those acked close by.

GMS holds a request's terminal result once its message is acknowledged; the poller then deletes
it. Several Tasks of a busy pool end within a few tens of milliseconds of each other, and each
``DeleteMessage`` cost the executor about 0.5 ms of CPU and the SQS server (moto, in the bench)
about 1 ms (and SQS bills it as a request): the poller waits ``DELETE_WAIT_S`` after the first
acknowledgement, or until 10 are waiting, and deletes them in one call. One worker that runs
short tasks back to back acknowledges one every few tens of milliseconds, so its deletes share
calls too: a receive does not make the waiting deletes before their time, it waits at most
``RECEIVE_WAIT_WHILE_ACKED_S`` (a long poll of a second, which returns at once when messages
wait), so a quiet queue's long poll never holds a delete back for more than that; the first
receive after their time makes them before it starts. A message stays in the pool's in-flight
book until its delete is made (and is extended meanwhile, as any held message): a poller that
crashes with deletes waiting loses only these notes, and its successor's reconciliation deletes
the messages (GMS already holds their terminal results). A message whose delete SQS refuses
reappears after its lease, and GMS's terminal result settles it then, as with a single delete.
While it has no lease the waiting deletes are kept (held and extended as before) and made once
a lease is granted again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from executor.errors import ExecutorError
from executor.pool.inflight import InFlightBook
from executor.queue.sqs import MAX_BATCH, SqsQueue

if TYPE_CHECKING:
    from loguru import Logger

DELETE_WAIT_S = 0.1
"""How long the first acknowledged message waits for others to share its delete call. A
receive in progress delays it until that receive returns (the poller's one thread makes its
calls in turn): at most ``RECEIVE_WAIT_WHILE_ACKED_S``, or a long poll that began before the
acknowledgement."""

RECEIVE_WAIT_WHILE_ACKED_S = 1
"""The longest wait of a receive made while deletes wait for their time (whole seconds, as SQS
takes them; 1 is still a long poll, which asks every SQS server, where 0 samples a few)."""


@dataclass(frozen=True)
class DeleteAcked:
    """Timer: delete the messages acknowledged since the first of them (``Acked``). ``batch``:
    the batch that timer was set for (``Acked.batch``); a batch deleted sooner (full, or at a
    receive, a lease or the stop) leaves its timer stale, and the next batch keeps its own
    wait. None deletes whatever waits."""

    batch: int | None = None


class Acked:
    """The requests acknowledged and not yet deleted, in order."""

    def __init__(self) -> None:
        self._urns: list[str] = []
        self._first_at: float | None = None
        """When the first of the waiting ones was acknowledged (``time.monotonic``)."""
        self.batch = 0
        """Counts the batches deleted: the number of the one waiting now."""

    def __len__(self) -> int:
        return len(self._urns)

    def add(self, urn: str) -> bool:
        """Note an acknowledgement; True when it is the first waiting (schedule a flush)."""
        if urn in self._urns:
            return False  # a repeat: its batch's timer is set already
        self._urns.append(urn)
        if len(self._urns) == 1:
            self._first_at = time.monotonic()
            return True
        return False

    def due(self, now: float, wait_s: float) -> bool:
        """Whether the waiting ones have waited ``wait_s`` (a receive then deletes them first)."""
        return self._first_at is not None and now - self._first_at >= wait_s

    def is_current(self, timer: DeleteAcked) -> bool:
        """Whether ``timer`` was set for the batch waiting now (or for whatever waits)."""
        return timer.batch is None or timer.batch == self.batch

    def acknowledge(self, urn: str, queue: SqsQueue | None, book: InFlightBook, log: Logger) -> bool:
        """Note an acknowledgement and delete at once when a call's worth waits; True when it is
        the first waiting (the caller schedules ``DeleteAcked``: others may join it meanwhile)."""
        first = self.add(urn)
        if self.full:
            self.flush(queue, book, log)
        return first

    @property
    def full(self) -> bool:
        """As many as one call deletes: flush now."""
        return len(self._urns) >= MAX_BATCH

    def flush(self, queue: SqsQueue | None, book: InFlightBook, log: Logger) -> None:
        """Delete every waiting message that is still held, ten per call. Without a queue (no
        lease) nothing is done: they stay waiting and held (extended once a lease is back), and
        the poller flushes them when its next lease is granted. A stopping poller's queue
        (``interrupted``) makes no more calls once one failed: each would hold the stop for a
        call's deadline, and a message not deleted comes back after its lease, where the
        reconciliation finds its result in GMS and deletes it."""
        if queue is None or not self._urns:
            return
        urns, self._urns = self._urns, []
        self._first_at = None
        self.batch += 1
        items = [item for item in (book.pop(urn) for urn in urns) if item is not None]
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start:start + MAX_BATCH]
            try:
                refused = queue.delete_batch([item.receipt_handle for item in chunk])
            except ExecutorError as exc:
                stopping = queue.interrupted
                left = len(items) - start if stopping else len(chunk)
                log.warning("could not delete the messages of {} request(s): {}", left, exc)
                if stopping:
                    break
                continue
            urn_of = {item.receipt_handle: item.urn for item in chunk}
            for handle, reason in refused:
                log.warning("could not delete the message of {}: {}", urn_of[handle], reason)
