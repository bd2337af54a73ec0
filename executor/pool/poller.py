"""QueuePoller: owns the pool's SQS queue — receive, keep leases alive, release, delete.

It receives only while the runner has free slots and asks for at most that many messages,
with an explicit visibility timeout. In-flight messages stay invisible (extended every
visibility/3) until GMS has accepted the terminal result (``Acknowledge``) or the message
is given back (``Release``). A message that cannot be decoded is logged without its body
and left to the queue's redrive policy; it never crashes the poller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from executor.backoff import Backoff, RetryState
from executor.datahub.envelope import decode_message
from executor.errors import BadInputError, ExecutorError, LeaseExpiredError
from executor.pool.context import PoolContext
from executor.pool.messages import (
    LEASER,
    RUNNER,
    Acknowledge,
    Beat,
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
)
from executor.queue.sqs import ReceivedMessage, SqsQueue
from executor.supervision import ChildContext, SupervisedActor

MAX_BATCH = 10
BEAT_S = 5.0
DEPTH_EVERY_S = 15.0
"""How often the queue's approximate depth is read for ``/metrics`` (autoscaling signal)."""


@dataclass(frozen=True)
class _ReadDepth:
    """Timer: read the queue's approximate depth, whether or not slots are free."""


@dataclass
class InFlight:
    """A message whose request is running or whose result is not yet accepted by GMS."""

    urn: str
    message_id: str
    receipt_handle: str


class QueuePoller(SupervisedActor):
    """Receives execution requests for one pool and settles their messages."""

    def __init__(self, ctx: ChildContext, pool: PoolContext, backoff: Backoff | None = None) -> None:
        super().__init__(ctx)
        self.pool = pool
        self.log = self.log.bind(pool=pool.pool_id)
        self.queue: SqsQueue | None = None
        self.free_slots = 0
        self.receiving = True
        self.in_flight: dict[str, InFlight] = {}
        self.retry = RetryState(backoff or Backoff(min_s=1.0, max_s=60.0, reset_after_s=120))
        self._poll_scheduled = False
        self.undecodable = 0
        self.sent = 0

    def setup(self) -> None:
        self.ctx.directory.tell(LEASER, LeaseWanted())
        self.ctx.directory.tell(RUNNER, CapacityWanted())
        self.actor_ref.tell(Beat())
        self.tell_self_after(self.pool.pool.visibility_s / 3, ExtendLeases())
        self.tell_self_after(DEPTH_EVERY_S, _ReadDepth())

    def teardown(self) -> None:
        # Messages still in flight reappear after their visibility lapses; another executor
        # (or our next incarnation) then picks them up. Nothing is deleted here.
        if self.in_flight:
            self.log.info("stopping with {} message(s) in flight", len(self.in_flight))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Poll):
            self._poll_scheduled = False
            self._poll()
        elif isinstance(message, LeaseGranted):
            if self.queue is not None:
                self.queue.close()
            self.queue = SqsQueue(message.lease, proxies=self.pool.proxies_for(message.lease.queue_url))
            self._update_readiness()
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
            self._settle(message.urn, delete=False)
        elif isinstance(message, StopReceiving):
            self.receiving = False
            self.pool.set_ready(False, "shutting down")
        elif isinstance(message, _ReadDepth):
            self._read_depth()
            self.tell_self_after(DEPTH_EVERY_S, _ReadDepth())
        elif isinstance(message, Beat):
            self.pool.heartbeat(self.ctx.path, max(BEAT_S, self.pool.pool.poll_wait_s + 5.0))
            self.tell_self_after(BEAT_S, Beat())
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
            messages = self.queue.receive(wanted, self.pool.pool.poll_wait_s, self.pool.pool.visibility_s)
        except ExecutorError as exc:
            self._receive_failed(exc)
            return
        self.retry.succeeded()
        self._update_readiness()
        self.log.trace("received {} message(s)", len(messages))
        for msg in messages:
            self._accept(msg)
        self._schedule_poll(0)

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
            self.undecodable += 1
            self.log.warning(
                "undecodable message {} (receive #{}): {}; left to the redrive policy",
                msg.message_id,
                msg.receive_count,
                exc,
            )
            return
        known = self.in_flight.get(task.urn)
        if known is not None:
            if known.message_id == msg.message_id:
                known.receipt_handle = msg.receipt_handle  # our own message came back: keep it
            else:
                self.log.bind(request=task.request_id).info("duplicate message for a running request")
                self._delete_quietly(msg.receipt_handle)
            return
        self.in_flight[task.urn] = InFlight(task.urn, msg.message_id, msg.receipt_handle)
        self.free_slots -= 1
        self.sent += 1
        self.ctx.directory.tell(
            RUNNER,
            RunRequest(
                task.urn, msg.message_id, self.ctx.incarnation, time.monotonic(), msg.sent_timestamp_s
            ),
        )

    # -- settling --------------------------------------------------------------------------
    def _extend_all(self) -> None:
        if self.queue is None:
            return
        for item in list(self.in_flight.values()):
            try:
                self.queue.extend(item.receipt_handle, self.pool.pool.visibility_s)
            except LeaseExpiredError as exc:
                self.ctx.directory.tell(LEASER, LeaseRejected(str(exc)))
                return
            except ExecutorError as exc:
                self.log.warning("could not extend the lease of {}: {}", item.urn, exc)

    def _settle(self, urn: str, delete: bool) -> None:
        item = self.in_flight.pop(urn, None)
        if item is None or self.queue is None:
            return  # unknown here (e.g. after a restart): it reappears and is handled then
        try:
            if delete:
                self.queue.delete(item.receipt_handle)
            else:
                self.queue.release(item.receipt_handle)
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
