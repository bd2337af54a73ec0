"""Acknowledged messages, deleted together: one ``DeleteMessageBatch`` for those acked close by.

GMS holds a request's terminal result once its message is acknowledged; the poller then deletes
it. Several Tasks of a busy pool end within a few tens of milliseconds of each other, and each
``DeleteMessage`` cost the executor about 0.5 ms of CPU and the SQS server (moto, in the bench)
about 1 ms: the poller now waits ``DELETE_WAIT_S`` after the first acknowledgement, or until 10
are waiting, and deletes them in one call. A message stays in the pool's in-flight book until
its delete is made (and is extended meanwhile, as any held message): a poller that crashes with
deletes waiting loses only these notes, and its successor's reconciliation deletes the messages
(GMS already holds their terminal results). A message whose delete SQS refuses reappears after
its lease, and GMS's terminal result settles it then, as with a single delete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from executor.errors import ExecutorError
from executor.pool.inflight import InFlightBook
from executor.queue.sqs import MAX_BATCH, SqsQueue

if TYPE_CHECKING:
    from loguru import Logger

DELETE_WAIT_S = 0.1
"""How long the first acknowledged message waits for others to share its delete call; a long
poll in progress delays it further (the poller's one thread makes its calls in turn), as it
delayed single deletes before."""


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

    @property
    def full(self) -> bool:
        """As many as one call deletes: flush now."""
        return len(self._urns) >= MAX_BATCH

    def flush(self, queue: SqsQueue | None, book: InFlightBook, log: Logger) -> None:
        """Delete every waiting message that is still held, ten per call. Without a queue (no
        lease) they are let go, as a single settle let them go: each reappears after its lease."""
        urns, self._urns = self._urns, []
        items = [item for item in (book.pop(urn) for urn in urns) if item is not None]
        if queue is None:
            return
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
