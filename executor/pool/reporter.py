"""Reporter: progress, terminal results and presence to GMS, with a durable outbox.

A terminal result is written to the outbox (fsync, atomic rename) *before* it is sent, and
retried with backoff until GMS accepts it; only then is the message settled (deleted, or
released for an interruption). Progress is best effort: the latest per request wins, and
nothing RUNNING is ever sent after a terminal result for the same request. On start the
outbox is flushed first, so results finished before a crash are delivered.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from typing import Any

from executor import __version__
from executor.backoff import Backoff, RetryState
from executor.datahub import aspects
from executor.errors import ExecutorError, FinalError, ImmutableError
from executor.pool.base import PoolActor
from executor.pool.context import PoolContext
from executor.pool.messages import (
    POLLER,
    Acknowledge,
    Finish,
    FlushOutbox,
    Progress,
    Release,
    ReportPresence,
)
from executor.reporting.outbox import Outbox
from executor.supervision import ChildContext

PRESENCE_INTERVAL_S = 30.0
REMEMBERED_TERMINALS = 10_000


class Reporter(PoolActor):
    """Delivers what the pool's tasks report to GMS."""

    def __init__(self, ctx: ChildContext, pool: PoolContext, backoff: Backoff | None = None) -> None:
        super().__init__(ctx, pool)
        self.outbox = outbox_of(pool)
        self.retry = RetryState(backoff or Backoff(min_s=1.0, max_s=60.0, reset_after_s=300))
        self.terminal: OrderedDict[str, str] = OrderedDict()
        self._flush_pending = False

    def setup(self) -> None:
        self._flush()
        self.actor_ref.tell(ReportPresence())

    def on_beat(self) -> None:
        if self.pool.metrics is not None:
            self.pool.metrics.set_outbox_depth(self.pool.pool_id, len(self.outbox))

    def handle(self, message: Any) -> Any:
        if isinstance(message, Progress):
            self._progress(message)
        elif isinstance(message, Finish):
            self._finish(message)
        elif isinstance(message, FlushOutbox):
            self._flush_pending = False
            self._flush()
        elif isinstance(message, ReportPresence):
            self._presence(message.stopped)
            if not message.stopped:
                self.tell_self_after(PRESENCE_INTERVAL_S, ReportPresence())
        return None

    def _progress(self, message: Progress) -> None:
        if message.urn in self.terminal:
            return  # never RUNNING after a terminal result
        try:
            self._send(message.urn, message.aspect)
        except ExecutorError as exc:
            self.log.debug("progress for {} dropped: {}", message.urn, exc)

    def _finish(self, message: Finish) -> None:
        # The sender has already made the result durable (``persist_result``).
        self._remember(message.urn, message.status)
        self._flush()

    def _flush(self) -> None:
        """Send every pending terminal result; schedule a retry if GMS is not reachable."""
        for key, record in self.outbox.pending():
            urn = str(record["urn"])
            self._remember(urn, str(record.get("status", "")))
            try:
                self._send(urn, record["aspect"])
            except ImmutableError:
                self.log.info("GMS already holds a final result for {}; dropping ours", urn)
            except FinalError as exc:
                self.log.error("GMS refused the result for {} for good: {}", urn, exc)
            except ExecutorError as exc:
                delay = self.retry.failed(time.monotonic())
                self.log.warning("result for {} not delivered ({}); retrying in {:.1f}s", urn, exc, delay)
                self._schedule_flush(delay)
                return
            self.retry.succeeded()
            # Tell the poller before the outbox forgets it: the shutdown stops the tree once
            # the outbox is empty, and the settling tell must be queued before that stop.
            settle = Release(urn) if record.get("release") else Acknowledge(urn)
            self.ctx.directory.tell(POLLER, settle)
            self.outbox.remove(key)
            if self.pool.metrics is not None:
                self.pool.metrics.count_task(self.pool.pool_id, str(record.get("status", "")))
            if self.pool.on_delivered is not None:
                self.pool.on_delivered(urn, str(record.get("status", "")))

    def _schedule_flush(self, delay: float) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.tell_self_after(delay, FlushOutbox())

    def _send(self, urn: str, aspect: dict[str, Any]) -> None:
        self.gms.ingest_proposal(aspects.EXECUTION_REQUEST_ENTITY, urn, aspects.RESULT_ASPECT, aspect)

    def _presence(self, stopped: bool) -> None:
        value = aspects.presence_aspect(
            pool_id=self.pool.pool_id,
            version=__version__,
            hostname=socket.gethostname(),
            uptime_s=time.time() - self.pool.started_at,
            stopped=stopped,
        )
        urn = f"urn:li:{aspects.REMOTE_EXECUTOR_ENTITY}:{self.pool.instance_id}"
        try:
            self.gms.ingest_proposal(aspects.REMOTE_EXECUTOR_ENTITY, urn, aspects.PRESENCE_ASPECT, value)
        except ExecutorError as exc:
            self.log.warning("presence not reported: {}", exc)

    def _remember(self, urn: str, status: str) -> None:
        self.terminal[urn] = status
        while len(self.terminal) > REMEMBERED_TERMINALS:
            self.terminal.popitem(last=False)


def persist_result(pool: PoolContext, finish: Finish) -> None:
    """Write a terminal result to the pool's outbox (durably) unless one is already waiting.

    Called by whoever produced the result, *before* telling the Reporter, so that a result is
    never only in a message: a Reporter that is restarting picks it up when it starts.
    The first terminal result of a request wins.
    """
    outbox = outbox_of(pool)
    key = _key(finish.urn)
    if outbox.has(key):
        return
    record = {"urn": finish.urn, "aspect": finish.aspect, "status": finish.status, "release": finish.release}
    outbox.put(key, record)


def has_pending_result(pool: PoolContext, urn: str) -> bool:
    """True while a terminal result of ``urn`` waits in the outbox (finished, not yet delivered)."""
    return outbox_of(pool).has(_key(urn))


def outbox_of(pool: PoolContext) -> Outbox:
    """The pool's outbox directory."""
    return Outbox(pool.state_dir / "outbox")


def _key(urn: str) -> str:
    return urn.rsplit(":", 1)[-1]
