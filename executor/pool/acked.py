"""Acknowledged messages, deleted together: one ``DeleteMessageBatch`` for those acked close by.

GMS holds a request's terminal result once its message is acknowledged; the poller then deletes
it. Several Tasks of a busy pool end within a few tens of milliseconds of each other, and each
``DeleteMessage`` cost the executor about 0.5 ms of CPU and the SQS server (moto, in the bench)
about 1 ms: the poller now waits ``DELETE_WAIT_S`` after the first acknowledgement, or until 10
are waiting, and deletes them in one call. A message stays in the pool's in-flight book until
its delete is made (and is extended meanwhile, as any held message): a poller that crashes with
deletes waiting loses only these notes, and its successor's reconciliation deletes the messages
(GMS already holds their terminal results). A message whose delete SQS refuses reappears after
its lease, and GMS's terminal result settles it then, as with a single delete. The poller also
deletes what waits before each receive starts, so a long poll never holds a delete back for a
second one; and while it has no lease the waiting deletes are kept (held and extended as
before) and made once a lease is granted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from executor.errors import ExecutorError
from executor.pool.inflight import InFlightBook
from executor.queue.sqs import MAX_BATCH, SqsQueue

if TYPE_CHECKING:
    from loguru import Logger

DELETE_WAIT_S = 0.1
"""How long the first acknowledged message waits for others to share its delete call. A long
poll in progress delays it until that receive returns (the poller's one thread makes its calls
in turn), never longer: the poller deletes what waits before it starts the next receive."""


@dataclass(frozen=True)
class DeleteAcked:
    """Timer: delete the messages acknowledged since the first of them (``Acked``)."""


class Acked:
    """The requests acknowledged and not yet deleted, in order."""

    def __init__(self) -> None:
        self._urns: list[str] = []

    def __len__(self) -> int:
        return len(self._urns)

    def add(self, urn: str) -> bool:
        """Note an acknowledgement; True when it is the first waiting (schedule a flush)."""
        if urn not in self._urns:
            self._urns.append(urn)
        return len(self._urns) == 1

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
        the poller flushes them when its next lease is granted."""
        if queue is None or not self._urns:
            return
        urns, self._urns = self._urns, []
        items = [item for item in (book.pop(urn) for urn in urns) if item is not None]
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start:start + MAX_BATCH]
            try:
                refused = queue.delete_batch([item.receipt_handle for item in chunk])
            except ExecutorError as exc:
                log.warning("could not delete the messages of {} request(s): {}", len(chunk), exc)
                continue
            urn_of = {item.receipt_handle: item.urn for item in chunk}
            for handle, reason in refused:
                log.warning("could not delete the message of {}: {}", urn_of[handle], reason)
