"""The poller's housekeeping as deadlines, done where its thread is awake anyway.

The QueuePoller's thread spends its time in SQS's long poll. Its periodic work (extend the held
messages, reconcile them, read the queue's depth) used to come on timers of its own, which
woke the process's timer thread at rest and then waited behind the receive anyway. Each duty
is now a deadline here; the poller does whatever is due after every receive returns (before
the next one starts) and on one timer, armed for the earliest deadline that applies:

- with messages held: the extension (every third of the visibility timeout; the receive's wait
  is cut so that it returns by then, ``receive_wait``) and the reconciliation (twice a lease);
- while the loop does not receive (no room, draining): the depth, every ``DEPTH_EVERY_S``
  (an empty receive stands for a depth of 0, so a receiving loop reads none);
- otherwise, at rest, only the safety net: one timer every ``SAFETY_NET_S``, on the process's
  common tick of that period, that restarts a loop whose ``Poll`` was lost, asks again for a
  lease or for room, and says "not ready" when a loop with room has not received for long.

A duty whose deadline is less than ``EARLY_S`` away is done now: a receive whose wait was
cut to a whole second before the extension then never comes back just short of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from executor.errors import ExecutorError
from executor.supervision.timers import GRID_S, Timers, due_on_tick

if TYPE_CHECKING:
    from loguru import Logger

    from executor.observability.metrics import Metrics
    from executor.queue.sqs import SqsQueue

DEPTH_EVERY_S = 15.0
"""How often the queue's approximate depth is read for ``/metrics`` when no receive says it."""
SAFETY_NET_S = 60.0
"""The period of the poller's one timer at rest (its only wake-up besides the long poll)."""
EARLY_S = 1.0
"""A deadline this close counts as due (SQS's receive waits in whole seconds)."""


@dataclass(frozen=True)
class Housekeeping:
    """Timer: do the poller's due housekeeping (``executor.pool.poll_duties``)."""


def reconcile_interval_s(visibility_s: int) -> float:
    """How often held messages are reconciled: twice per lease, so a message whose settling
    tell was lost is settled well within two visibility periods."""
    return max(1.0, visibility_s / 2)


class Duties:
    """The deadlines of the poller's periodic work (monotonic seconds; None: not running)."""

    def __init__(self, visibility_s: int, depth: bool, safety_net_s: float = SAFETY_NET_S) -> None:
        self.visibility_s = visibility_s
        self.safety_net_s = safety_net_s
        self.extend_at: float | None = None
        self.reconcile_at: float | None = None
        self.depth_at: float | None = time.monotonic() + DEPTH_EVERY_S if depth else None

    def sync(self, held: bool, now: float) -> None:
        """Start the held messages' clocks when the first is held; stop them when none is."""
        if not held:
            self.extend_at = self.reconcile_at = None
            return
        if self.extend_at is None:
            self.extend_at = now + self.visibility_s / 3
        if self.reconcile_at is None:
            self.reconcile_at = now + reconcile_interval_s(self.visibility_s)

    def extend_due(self, now: float) -> bool:
        """Whether the held messages are to be extended now."""
        return _due(self.extend_at, now)

    def extended(self, now: float) -> None:
        """A round of extensions was made (or tried: the next round tries again)."""
        self.extend_at = now + self.visibility_s / 3

    def reconcile_due(self, now: float) -> bool:
        """Whether the held messages are to be reconciled now."""
        return _due(self.reconcile_at, now)

    def reconciled(self, now: float) -> None:
        """A reconciliation round was asked for."""
        self.reconcile_at = now + reconcile_interval_s(self.visibility_s)

    def depth_due(self, now: float) -> bool:
        """Whether the queue's depth is to be read now (``depth_known`` postpones it)."""
        return _due(self.depth_at, now)

    def depth_known(self, now: float) -> None:
        """The depth was read, or a receive came back empty (a depth of 0)."""
        if self.depth_at is not None:
            self.depth_at = now + DEPTH_EVERY_S

    def next_due(self, with_depth: bool) -> float | None:
        """When the timer must fire: the earliest deadline that applies (the depth's only
        ``with_depth``: the loop does not receive), less ``EARLY_S``; None when only the safety
        net does."""
        deadlines = [d for d in (self.extend_at, self.reconcile_at) if d is not None]
        if with_depth and self.depth_at is not None:
            deadlines.append(self.depth_at)
        return min(deadlines) - EARLY_S if deadlines else None

    def receive_wait(self, now: float, poll_wait_s: int) -> int:
        """The receive's wait: the full ``poll_wait_s``, or while messages are held, the whole
        seconds left before their extension, so the receive returns in time for it."""
        if self.extend_at is None:
            return poll_wait_s
        return min(poll_wait_s, max(0, int(self.extend_at - now)))


def _due(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline - EARLY_S


class DutyTimer:
    """The poller's one housekeeping timer. It is moved only when an earlier deadline is wanted
    (a later one is left to fire and find little to do), so the receives at rest, which all
    want the same safety net, never touch the timer thread."""

    def __init__(self, timers: Timers, ref: pykka.ActorRef[Any], safety_net_s: float) -> None:
        self._timers = timers
        self._ref = ref
        self._net_s = safety_net_s
        self._armed: tuple[int, float] | None = None
        """The armed timer's handle and due time."""

    @property
    def due(self) -> float | None:
        """When the armed timer fires (monotonic), if one is armed."""
        return None if self._armed is None else self._armed[1]

    def fired(self) -> None:
        """Its ``Housekeeping`` arrived: nothing is armed any more."""
        self._armed = None

    def arm(self, due: float | None) -> None:
        """Fire by ``due`` (monotonic), or with None, on the safety net's next tick if nothing
        is armed."""
        if due is None:
            if self._armed is None:
                when = due_on_tick(self._net_s)
                self._armed = (self._timers.tell_at(when, self._ref, Housekeeping()), when)
            return
        if self._armed is not None:
            if self._armed[1] <= due + GRID_S:
                return
            self._timers.cancel(self._armed[0])
        delay = due - time.monotonic()
        self._armed = (self._timers.tell_after(delay, self._ref, Housekeeping()), due)


def read_depth(queue: SqsQueue, metrics: Metrics, pool_id: str, log: Logger) -> None:
    """Publish ``ApproximateNumberOfMessages`` (read with the leased credentials) as a gauge.

    Due even when the loop does not receive: when every slot is busy the poller stops
    receiving, and that is exactly when an autoscaler needs the depth."""
    try:
        depth = queue.approximate_depth()
    except ExecutorError as exc:
        log.debug("queue depth not read: {}", exc)
        return
    metrics.set_queue_depth(pool_id, depth)
