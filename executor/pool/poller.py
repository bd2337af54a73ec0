"""QueuePoller: owns the pool's SQS queue — receive, keep leases alive, release, delete.

It receives only while the runner has free slots and asks for at most that many messages,
with an explicit visibility timeout. In-flight messages stay invisible (extended every
visibility/3) until GMS has accepted the terminal result (``Acknowledge``) or the message
is given back (``Release``). The held messages live in the pool's ``InFlightBook``, so a
restarted poller keeps extending what its predecessor held; while it holds any, its long
poll is shortened to a third of the lease so that no extension comes late. A message that
cannot be decoded, or carries another kind of task, is logged once without its body and left
to the queue's redrive policy (``executor.pool.poison``); it never crashes the poller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from executor.backoff import Backoff, RetryState
from executor.datahub.envelope import decode_message
from executor.errors import BadInputError, ExecutorError, LeaseExpiredError, RetryableError
from executor.pool.base import BEAT_S, PoolActor
from executor.pool.context import PoolContext
from executor.pool.inflight import InFlight
from executor.pool.messages import (
    LEASER,
    RUNNER,
    Acknowledge,
    Capacity,
    CapacityWanted,
    ExtendLeases,
    LeaseGranted,
    LeaseLost,
    LeaseRejected,
    LeaseWanted,
    Poll,
    Release,
    RunRequest,
    StopReceiving,
    Unrunnable,
)
from executor.pool.poison import PoisonPolicy
from executor.queue.sqs import ReceivedMessage, SqsQueue
from executor.supervision import ChildContext

MAX_BATCH = 10
DEPTH_EVERY_S = 15.0
"""How often the queue's approximate depth is read for ``/metrics`` (autoscaling signal)."""


@dataclass(frozen=True)
class _ReadDepth:
    """Timer: read the queue's approximate depth, whether or not slots are free."""


class QueuePoller(PoolActor):
    """Receives execution requests for one pool and settles their messages."""

    def __init__(self, ctx: ChildContext, pool: PoolContext, backoff: Backoff | None = None) -> None:
        super().__init__(ctx, pool)
        self.queue: SqsQueue | None = None
        self.free_slots = 0
        self.receiving = True
        self.in_flight = pool.in_flight
        self.poison = PoisonPolicy(pool.pool.visibility_s)
        self.retry = RetryState(backoff or Backoff(min_s=1.0, max_s=60.0, reset_after_s=120))
        self._poll_scheduled = False
        self.sent = 0

    def setup(self) -> None:
        self.ctx.directory.tell(LEASER, LeaseWanted())
        self.ctx.directory.tell(RUNNER, CapacityWanted())
        if self.in_flight:
            # A predecessor crashed holding these: extend them as soon as a lease is here.
            self.log.info("keeping {} message(s) held by the previous poller", len(self.in_flight))
        self.tell_self_after(self.pool.pool.visibility_s / 3, ExtendLeases())
        self.tell_self_after(DEPTH_EVERY_S, _ReadDepth())

    def release(self) -> None:
        # Held messages stay in the pool's book: a restarted poller keeps extending them. At
        # shutdown they reappear once their visibility lapses. Nothing is deleted here.
        if self.in_flight:
            self.log.info("stopping with {} message(s) in flight", len(self.in_flight))

    def beat_allowance_s(self) -> float:
        return max(BEAT_S, self.pool.pool.poll_wait_s + 5.0)  # a long poll delays the beat

    def handle(self, message: Any) -> Any:
        if isinstance(message, Poll):
            self._poll_scheduled = False
            self._poll()
        elif isinstance(message, LeaseGranted):
            if self.queue is not None:
                self.queue.close()
            self.queue = SqsQueue(
                message.lease,
                proxies=self.pool.proxies_for(message.lease.queue_url),
                max_wait_s=self.pool.pool.poll_wait_s,
            )
            self._update_readiness()
            if self.in_flight:
                self._extend_all()
            self._schedule_poll(0)
            self._read_depth()
        elif isinstance(message, LeaseLost):
            if self.queue is not None:
                self.queue.close()
            self.queue = None
            self.pool.set_ready(False, f"no lease: {message.reason}")
        elif isinstance(message, Capacity):
            accepted = message.accepted if message.poller_incarnation == self.ctx.incarnation else 0
            self.free_slots = message.free_slots - (self.sent - accepted)
            self._schedule_poll(0)
        elif isinstance(message, ExtendLeases):
            self._extend_all()
            self.tell_self_after(self.pool.pool.visibility_s / 3, ExtendLeases())
        elif isinstance(message, Acknowledge):
            self._settle(message.urn, delete=True)
        elif isinstance(message, Release):
            self._settle(message.urn, delete=False, visibility_s=message.delay_s)
        elif isinstance(message, Unrunnable):
            item = self.in_flight.pop(message.urn)
            if item is not None and self.queue is not None:
                self._poisoned(item.message_id, item.receipt_handle, item.receive_count, message.reason)
        elif isinstance(message, StopReceiving):
            self.receiving = False
            self.pool.set_ready(False, "shutting down")
        elif isinstance(message, _ReadDepth):
            self._read_depth()
            self.tell_self_after(DEPTH_EVERY_S, _ReadDepth())
        return None

    def _read_depth(self) -> None:
        """Publish ``ApproximateNumberOfMessages`` (read with the leased credentials) as a gauge.

        On its own timer rather than after receives: when every slot is busy the poller stops
        receiving, and that is exactly when an autoscaler needs the depth.
        """
        if self.queue is None or self.pool.metrics is None:
            return
        try:
            depth = self.queue.approximate_depth()
        except ExecutorError as exc:
            self.log.debug("queue depth not read: {}", exc)
            return
        self.pool.metrics.set_queue_depth(self.pool.pool_id, depth)

    # -- receiving -------------------------------------------------------------------------
    def _schedule_poll(self, delay_s: float) -> None:
        if self._poll_scheduled:
            return
        self._poll_scheduled = True
        if delay_s <= 0:
            self.actor_ref.tell(Poll())
        else:
            self.tell_self_after(delay_s, Poll())

    def _poll(self) -> None:
        if self.queue is None or not self.receiving or self.free_slots <= 0:
            return  # a LeaseGranted or a Capacity message will start polling again
        wanted = min(self.free_slots, MAX_BATCH)
        self.log.trace("receiving up to {} message(s)", wanted)
        try:
            messages = self.queue.receive(wanted, self._wait_s(), self.pool.pool.visibility_s)
        except ExecutorError as exc:
            self._receive_failed(exc)
            return
        self.retry.succeeded()
        self._update_readiness()
        self.log.trace("received {} message(s)", len(messages))
        for msg in messages:
            self._accept(msg)
        self._schedule_poll(0)

    def _wait_s(self) -> int:
        """The long poll: shortened while messages are held, so extensions are never late.

        Extensions run every visibility/3, but not while a receive blocks this actor; a wait
        below visibility/3 keeps the gap between two extensions under 2/3 of the lease.
        """
        wait = self.pool.pool.poll_wait_s
        if self.in_flight:
            wait = min(wait, max(0, self.pool.pool.visibility_s // 3 - 1))
        return wait

    def _receive_failed(self, exc: ExecutorError) -> None:
        if isinstance(exc, LeaseExpiredError):
            self.ctx.directory.tell(LEASER, LeaseRejected(str(exc)))
        delay = self.retry.failed(time.monotonic())
        self.pool.set_ready(False, f"SQS receive failing: {exc}")
        self.log.warning("receive failed ({}); retrying in {:.1f}s", exc, delay)
        self._schedule_poll(delay)

    def _accept(self, msg: ReceivedMessage) -> None:
        try:
            task = decode_message(msg.body)
        except BadInputError as exc:
            self._poisoned(msg.message_id, msg.receipt_handle, msg.receive_count, f"undecodable: {exc}")
            return
        if not task.is_ingestion:
            reason = f"a task this executor does not run ({task.task[:100]!r})"
            self._poisoned(msg.message_id, msg.receipt_handle, msg.receive_count, reason)
            return
        known = self.in_flight.get(task.urn)
        if known is not None:
            if known.message_id == msg.message_id:
                self.in_flight.renew(task.urn, msg.receipt_handle, msg.receive_count)  # ours came back
            else:
                self.log.bind(request=task.request_id).info("duplicate message for a running request")
                self._delete_quietly(msg.receipt_handle)
            return
        self.in_flight.put(InFlight(task.urn, msg.message_id, msg.receipt_handle, msg.receive_count))
        self.free_slots -= 1
        self.sent += 1
        self.ctx.directory.tell(
            RUNNER,
            RunRequest(
                task.urn, msg.message_id, self.ctx.incarnation, msg.sent_timestamp_s
            ),
        )

    def _poisoned(self, message_id: str, receipt_handle: str, receive_count: int, reason: str) -> None:
        """Log once (never the body), then hide it briefly: the redrive policy takes it from there."""
        verdict = self.poison.judge(message_id, receive_count)
        if verdict.delete:
            self.log.error("deleting message {} after {} receives: {}", message_id, receive_count, reason)
        elif verdict.log_it:
            self.log.warning(
                "message {} (receive #{}) not run: {}; left to the redrive policy",
                message_id,
                receive_count,
                reason,
            )
        assert self.queue is not None
        try:
            if verdict.delete:
                self.queue.delete(receipt_handle)
            else:
                self.queue.extend(receipt_handle, verdict.visibility_s)
        except ExecutorError as exc:
            self.log.debug("could not settle message {}: {}", message_id, exc)

    # -- settling --------------------------------------------------------------------------
    def _extend_all(self) -> None:
        if self.queue is None:
            return
        for item in self.in_flight.items():
            try:
                self.queue.extend(item.receipt_handle, self.pool.pool.visibility_s)
            except LeaseExpiredError as exc:
                self.ctx.directory.tell(LEASER, LeaseRejected(str(exc)))
                return
            except RetryableError as exc:
                self.log.warning("could not extend the leases of {} message(s): {}", len(self.in_flight), exc)
                return  # SQS is not answering: the next round tries again
            except ExecutorError as exc:
                # A final answer (an invalid receipt handle: the queue was recreated, or the
                # lease lapsed and someone else received it): the message is no longer ours.
                self.in_flight.pop(item.urn)
                self.log.warning("lost the message of {} ({}); no longer extending it", item.urn, exc)

    def _settle(self, urn: str, delete: bool, visibility_s: int = 0) -> None:
        item = self.in_flight.pop(urn)
        if item is None or self.queue is None:
            return  # unknown here: it reappears and its request's state in GMS decides then
        try:
            if delete:
                self.queue.delete(item.receipt_handle)
            else:
                self.queue.extend(item.receipt_handle, visibility_s)
        except ExecutorError as exc:
            self.log.warning(
                "could not {} the message of {}: {}", "delete" if delete else "release", urn, exc
            )

    def _delete_quietly(self, receipt_handle: str) -> None:
        assert self.queue is not None
        try:
            self.queue.delete(receipt_handle)
        except ExecutorError as exc:
            self.log.warning("could not delete a duplicate message: {}", exc)

    def _update_readiness(self) -> None:
        if self.queue is not None and self.receiving:
            self.pool.set_ready(True, "leased and polling")
