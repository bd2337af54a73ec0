"""QueuePoller: owns the pool's SQS queue — receive, keep leases alive, release, delete.

It receives only while the pool's task book has room and asks for at most that many messages, with
an explicit visibility timeout, and starts each request's Task itself on the same turn
(``executor.pool.task_start``: the room is checked and taken in the book, so neither side's restart
leaves the poller and the runner counting apart). In-flight messages stay invisible (extended every
visibility/3) until GMS has accepted the terminal result (``Acknowledge``: the messages
acknowledged within ``acked.DELETE_WAIT_S`` of the first are deleted in one call) or the message is
given back (``Release``). The held messages live in the pool's ``InFlightBook``, so a restarted
poller keeps extending what its predecessor held; while it holds any, its long poll ends by their
next extension so that none comes late; at rest it waits the full ``poll_wait_s`` (20 s by
default), and a stop cuts it short (``poller_inbox``). A message that cannot be decoded, or carries
another kind of task, is logged once without its body and left to the queue's redrive policy
(``executor.pool.poison``); it never crashes the poller.

With no room it parks in the book (a receive that fills the pool parks at once, with no ``Poll``
turn to find it full), and the runner wakes it (``messages.Capacity``, on whose turn it receives)
when an ended Task frees some; a new runner wakes it at its start, and each housekeeping round
looks again. Its periodic work (extensions, reconciliation, the queue's depth) is done after each
receive and on one timer, with a safety net on the timer's turns, only when due
(``executor.pool.poll_duties``): at rest the timer fires once a minute and the long poll is the
poller's only other wake-up. Twice a lease, while it holds messages, the poller settles them from
scratch (``executor.pool.reconcile``), which recovers any settling tell lost to a restarting
sibling. Mailbox: a restart drops it; everything in it is either re-sent on a timer or recovered by
the next housekeeping round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from executor.backoff import Backoff, RetryState
from executor.datahub.envelope import decode_message
from executor.errors import (
    BadInputError,
    ExecutorError,
    LeaseExpiredError,
)
from executor.pool.acked import DELETE_WAIT_S, RECEIVE_WAIT_WHILE_ACKED_S, Acked, DeleteAcked
from executor.pool.base import BEAT_S, PoolActor
from executor.pool.context import PoolContext
from executor.pool.held_messages import extend_held, settle
from executor.pool.inflight import InFlight
from executor.pool.messages import (
    LEASER,
    Acknowledge,
    Capacity,
    LeaseGranted,
    LeaseLost,
    LeaseRejected,
    LeaseWanted,
    LiveTasks,
    Poll,
    Release,
    RunRequest,
    StopReceiving,
    Unrunnable,
)
from executor.pool.poison import PoisonPolicy
from executor.pool.poll_duties import SAFETY_NET_S, Duties, DutyTimer, Housekeeping, read_depth
from executor.pool.poll_loop import PollLoop
from executor.pool.poller_inbox import StopCutsTheLongPoll
from executor.pool.reconcile import Fate, Reconciler
from executor.pool.task_start import pool_room, start_task
from executor.pool.taskbook import Added
from executor.queue.sqs import ReceivedMessage, SqsQueue
from executor.supervision import ChildContext
from executor.supervision.strandactor import StrandInbox

MAX_BATCH = 10
EXTEND_RETRY_S = 1.0
"""A throttled extension is tried again this soon (the other messages are extended meanwhile)."""
STALL_GRACE_S = 5.0
"""Beyond a long poll and a lease without a receive, a loop with room reads as not ready."""


@dataclass(frozen=True)
class _ExtendAgain:
    """Timer: extend these (throttled) messages again."""

    urns: tuple[str, ...]


class QueuePoller(PoolActor):
    """Receives execution requests for one pool and settles their messages."""

    def __init__(self, ctx: ChildContext, pool: PoolContext, backoff: Backoff | None = None,
                 safety_net_s: float = SAFETY_NET_S) -> None:
        super().__init__(ctx, pool)
        self.queue: SqsQueue | None = None
        self.room = pool_room(pool)
        self.receiving = True
        self.in_flight = pool.in_flight
        self.poison = PoisonPolicy(pool.pool.visibility_s)
        self.retry = RetryState(backoff or Backoff(min_s=1.0, max_s=60.0, reset_after_s=120))
        self.loop = PollLoop(self)
        self._stopping = False
        """Set by ``stop_requested`` from the stopper's thread."""
        self.last_receive = time.monotonic()
        self.reconciler = Reconciler(pool, ctx.directory, self.log)
        self.acked = Acked()
        self.duties = Duties(pool.pool.visibility_s, depth=pool.metrics is not None)
        self._safety_net_s = safety_net_s
        self.timer: DutyTimer | None = None

    def _create_actor_inbox(self) -> StrandInbox:  # type: ignore[override]
        return StopCutsTheLongPoll(self.strand, self)

    def stop_requested(self) -> None:
        """A stop is on its way (any thread): end the receive in progress, make no more.

        A message SQS had put in the cut answer comes back after its visibility timeout, as
        one that a receive brought in just before the stop did (its release would come too
        late for a stopped poller); ``executor.queue.interrupt`` says why the window is small.
        """
        self._stopping = True
        queue = self.queue
        if queue is not None:
            queue.interrupt()

    def setup(self) -> None:
        self.ctx.directory.tell(LEASER, LeaseWanted())
        if self.in_flight:
            # A predecessor crashed holding these: extend them as soon as a lease is here.
            self.log.info("keeping {} message(s) held by the previous poller", len(self.in_flight))
        self.timer = DutyTimer(self.timers, self.actor_ref, self._safety_net_s)
        self._arm()

    def release(self) -> None:
        # Held messages stay in the pool's book: a restarted poller keeps extending them. At
        # shutdown they reappear once their visibility lapses. Nothing is deleted here.
        self.acked.flush(self.queue, self.in_flight, self.log)  # in GMS: delete now, not after a lease
        if self.in_flight:
            self.log.info("stopping with {} message(s) in flight", len(self.in_flight))
        if self.queue is not None:
            self.queue.close()

    def beat_allowance_s(self) -> float:
        return max(BEAT_S, self.pool.pool.poll_wait_s + 5.0)  # a long poll delays the beat

    def handle(self, message: Any) -> Any:
        self._dispatch(message)
        self._arm()  # whatever the message changed, the timer fires by the next deadline
        return None

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, Poll):
            if self.loop.take(message):
                self._poll()
        elif isinstance(message, Housekeeping):
            if self.timer is not None:
                self.timer.fired()
            now = time.monotonic()
            self._duties(now)
            self._safety_net(now)
        elif isinstance(message, LeaseGranted):
            if self.queue is not None:
                self.queue.close()
            self.queue = SqsQueue(message.lease, proxies=self.pool.proxies_for(message.lease.queue_url),
                                  max_wait_s=self.pool.pool.poll_wait_s)
            if self._stopping:  # the stop may have read the queue before this one was set
                self.queue.interrupt()
            self._update_readiness()
            self.acked.flush(self.queue, self.in_flight, self.log)  # waiting since the lease was lost
            if self.in_flight:
                self._extend_all()
                self.duties.extended(time.monotonic())
            self.loop.schedule(0)
        elif isinstance(message, LeaseLost):
            if self.queue is not None:
                self.queue.close()
            self.queue = None
            self.pool.set_ready(False, f"no lease: {message.reason}")
        elif isinstance(message, Capacity):
            if self.loop.due is None:  # room came free: receive in this turn, as a Poll told now would
                self._poll()
        elif isinstance(message, _ExtendAgain):
            self._extend_all(set(message.urns))
        elif isinstance(message, LiveTasks):
            self._reconcile(message)
        elif isinstance(message, Acknowledge):
            if self.acked.acknowledge(message.urn, self.queue, self.in_flight, self.log):
                self.tell_self_after(DELETE_WAIT_S, DeleteAcked(self.acked.batch))
        elif isinstance(message, DeleteAcked):
            if self.acked.is_current(message):
                self.acked.flush(self.queue, self.in_flight, self.log)
        elif isinstance(message, Release):
            self._settle(message.urn, delete=False, visibility_s=message.delay_s)
        elif isinstance(message, Unrunnable):
            item = self.in_flight.pop(message.urn)
            if item is not None and self.queue is not None:
                self._poisoned(item.message_id, item.receipt_handle, item.receive_count, message.reason)
        elif isinstance(message, StopReceiving):
            self.receiving = False
            self.pool.set_ready(False, "shutting down")

    # -- housekeeping (executor.pool.poll_duties) ------------------------------------------
    def _duties(self, now: float) -> None:
        """Do what is due: after each receive, and when the one timer fires (with the safety net
        then: after a receive the loop is alive)."""
        self.duties.sync(bool(self.in_flight), now)
        if self.duties.extend_due(now):
            self._extend_all()
            self.duties.extended(now)
        if self.duties.reconcile_due(now):
            self.reconciler.ask(frozenset(item.urn for item in self.in_flight.items()))
            self.duties.reconciled(now)
        if self.duties.depth_due(now):
            if self.queue is not None and self.pool.metrics is not None:
                read_depth(self.queue, self.pool.metrics, self.pool.pool_id, self.log)
            self.duties.depth_known(now)

    def _safety_net(self, now: float) -> None:
        """What a lost tell would leave undone: a loop whose ``Poll`` was lost, a room or a
        lease never announced; and a loop with room that has not received for long is not ready."""
        self.loop.replace_lost(now, self.log)
        self.loop.schedule(0)  # a parked loop looks at the room again; a pending Poll stays
        if self.queue is None:
            self.ctx.directory.tell(LEASER, LeaseWanted())
        elif self.receiving and now - self.last_receive > self._stall_s():
            free = self.pool.tasks.poller_room(self.room, park=False)
            if free > 0:
                idle = now - self.last_receive
                self.pool.set_ready(False, f"{free} slot(s) free but no receive for {idle:.0f}s")

    def _stall_s(self) -> float:
        return self.pool.pool.poll_wait_s + self.pool.pool.visibility_s + STALL_GRACE_S

    def _arm(self) -> None:
        """Keep the one timer due by the earliest deadline that applies (the safety net's tick
        at rest): the depth's only while the loop does not receive."""
        self.duties.sync(bool(self.in_flight), time.monotonic())
        if self.timer is not None:
            idle_loop = self.loop.due is None and self.queue is not None  # parked or draining
            self.timer.arm(self.duties.next_due(with_depth=idle_loop))

    # -- receiving -------------------------------------------------------------------------
    def _poll(self) -> None:
        if self.queue is None or not self.receiving or self._stopping:
            return  # a LeaseGranted message will start polling again
        if not self.pool.tasks.admitting:  # the pool drains (a StopReceiving may have been lost)
            self.receiving = False
            self.pool.set_ready(False, "shutting down")
            return
        free = self.pool.tasks.poller_room(self.room)
        if free <= 0:
            return  # parked in the book: the runner's Capacity wakes this once a Task has ended
        wanted = min(free, MAX_BATCH)
        wait_s = self._wait_s()
        if self.acked.due(time.monotonic(), DELETE_WAIT_S):
            self.acked.flush(self.queue, self.in_flight, self.log)  # their time: before a long poll
        elif self.acked:  # others may still share their call: a short long poll keeps them waiting
            wait_s = min(wait_s, RECEIVE_WAIT_WHILE_ACKED_S)
        self.log.trace("receiving up to {} message(s)", wanted)
        try:
            messages = self.queue.receive(wanted, wait_s, self.pool.pool.visibility_s)
        except ExecutorError as exc:
            if not self._stopping:  # a cut long poll is the stop's doing, not a failure
                self._receive_failed(exc)
            return
        self.retry.succeeded()
        self.last_receive = time.monotonic()
        self._update_readiness()
        self.log.trace("received {} message(s)", len(messages))
        if not messages and self.pool.metrics is not None:
            # Nothing was waiting: the depth is 0 without asking SQS (a call per pool at rest).
            self.pool.metrics.set_queue_depth(self.pool.pool_id, 0)
            self.duties.depth_known(self.last_receive)
        for msg in messages:
            self._accept(msg)
        if self.pool.tasks.poller_room(self.room) > 0:  # else parked: the runner's Capacity wakes it
            self.loop.schedule(0)
        self._duties(time.monotonic())  # before the next receive: extensions due by now are never late

    def _wait_s(self) -> int:
        """The long poll: while messages are held, it ends by their next extension.

        An extension due within ``EARLY_S`` is made after a receive, so each comes a third of
        the lease after the last, whether the loop receives, waits for room or backs off.
        """
        self.duties.sync(bool(self.in_flight), time.monotonic())
        return self.duties.receive_wait(time.monotonic(), self.pool.pool.poll_wait_s)

    def _receive_failed(self, exc: ExecutorError) -> None:
        if isinstance(exc, LeaseExpiredError):
            self.ctx.directory.tell(LEASER, LeaseRejected(str(exc)))
        delay = self.retry.failed(time.monotonic())
        self.pool.set_ready(False, f"SQS receive failing: {exc}")
        self.log.warning("receive failed ({}); retrying in {:.1f}s", exc, delay)
        self.loop.schedule(delay)

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
        try:
            request = RunRequest(task.urn, msg.message_id, msg.sent_timestamp_s)
            added = start_task(self.pool, self.ctx, request, self.room)
        except Exception as exc:  # the rest of the batch is still held: settle this one, go on
            self.log.bind(request=task.request_id).exception("could not start a Task: {}", exc)
            self._settle(task.urn, delete=False)
            return
        if added is Added.NO_ROOM:  # a Task weighed heavier since the receive, or the pool drains
            self.log.bind(request=task.request_id).info("no room (or draining): giving the message back")
            self._settle(task.urn, delete=False)
        # Added.KNOWN: a Task runs it already (its earlier message settled); the message stays
        # held, and reconciliation settles it once that Task has ended.

    def _poisoned(self, message_id: str, receipt_handle: str, receive_count: int, reason: str) -> None:
        """Log a message that will not run once (never its body), then hide it briefly, or
        delete it after many receives, as ``executor.pool.poison`` decides."""
        assert self.queue is not None
        verdict = self.poison.judge(message_id, receive_count)
        if verdict.delete:
            self.log.error("deleting message {} after {} receives: {}", message_id, receive_count, reason)
        elif verdict.log_it:
            self.log.warning("message {} (receive #{}) not run: {}; left to the redrive policy",
                             message_id, receive_count, reason)
        error = settle(self.queue, receipt_handle, delete=verdict.delete, visibility_s=verdict.visibility_s)
        if error is not None:
            self.log.debug("could not settle message {}: {}", message_id, error)

    # -- settling --------------------------------------------------------------------------
    def _extend_all(self, only: set[str] | None = None) -> None:
        """One round of extensions (``executor.pool.held_messages``); throttled ones again shortly."""
        if self.queue is None:
            return
        done = extend_held(self.queue, self.in_flight, self.pool.pool.visibility_s, self.log, only)
        if done.refused is not None:
            self.log.warning("SQS refused the lease's credentials ({}); asking for a new lease", done.refused)
            self.ctx.directory.tell(LEASER, LeaseRejected(str(done.refused)))
        elif done.throttled:
            self.log.warning("SQS throttled {} extension(s); retrying them shortly", len(done.throttled))
            self.tell_self_after(EXTEND_RETRY_S, _ExtendAgain(tuple(done.throttled)))

    def _settle(self, urn: str, delete: bool, visibility_s: int = 0) -> None:
        item = self.in_flight.pop(urn)
        if item is None or self.queue is None:
            return  # unknown here: it reappears and its request's state in GMS decides then
        error = settle(self.queue, item.receipt_handle, delete=delete, visibility_s=visibility_s)
        if error is not None:
            action = "delete" if delete else "release"
            self.log.warning("could not {} the message of {}: {}", action, urn, error)

    # -- reconciliation (executor.pool.reconcile) --------------------------------------------
    def _reconcile(self, answer: LiveTasks) -> None:
        if self.queue is None:
            return  # no lease to settle with: the next round asks again
        held = self.in_flight.get
        for urn, fate, reason in self.reconciler.judge(answer, self.gms, lambda u: held(u) is not None):
            self._apply(urn, fate, reason)

    def _apply(self, urn: str, fate: Fate, reason: str) -> None:
        if fate is Fate.DELETE:
            self._settle(urn, delete=True)
        elif fate is Fate.RELEASE:
            self._settle(urn, delete=False)
        elif fate is Fate.RELEASE_LATER:
            self._settle(urn, delete=False, visibility_s=self.pool.pool.visibility_s)
        else:
            item = self.in_flight.pop(urn)
            if item is not None:
                self._poisoned(item.message_id, item.receipt_handle, item.receive_count, reason)

    def _delete_quietly(self, receipt_handle: str) -> None:
        assert self.queue is not None
        error = settle(self.queue, receipt_handle, delete=True)
        if error is not None:
            self.log.warning("could not delete a duplicate message: {}", error)

    def _update_readiness(self) -> None:
        if self.queue is not None and self.receiving:
            self.pool.set_ready(True, "leased and polling")
