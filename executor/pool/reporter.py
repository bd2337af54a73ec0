"""Reporter: progress, terminal results and presence to GMS, with a durable outbox.

A terminal result is written to the outbox (fsync, atomic rename) *before* it is sent, and
retried with backoff until GMS accepts it; only then is the message settled (deleted, or
released for an interruption). Only "already terminal" (``ImmutableError``) also counts as
delivered: a refused token (401/403), a 404, a throttle or a timeout keeps the record, retries
it later and keeps the pool not ready with the reason, so no result is lost while the token is
wrong; it goes out once the token works again (or after a restart on the same state dir).

Slowness is not death: every handler makes at most one GMS call that can block (each call is
bounded by its total deadline, and the client fails fast for a while after a timeout), so a
turn of its strand (``/healthz`` reads how long one lasts) is one call at most. Progress is
coalesced, the latest per request, and sent on a timer rather than once per message, so the
mailbox stays small however slow GMS is;
nothing RUNNING is ever sent after a terminal result for the same request. On start the
outbox is flushed first, so results finished before a crash are delivered.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from executor import __version__
from executor.backoff import Backoff, RetryState
from executor.datahub import aspects
from executor.errors import ExecutorError, FinalError, ImmutableError, NotAllowedError, RetryableError
from executor.pool.base import PoolActor
from executor.pool.context import PoolContext
from executor.pool.messages import (
    POLLER,
    REPORTER,
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
PRESENCE_RETRY_S = 5.0
REMEMBERED_TERMINALS = 10_000
RETRY_MAX_S = 15.0
"""Longest wait between two delivery attempts: a waiting result goes out within this (plus one
call) of GMS answering again, and a retry costs GMS one small call."""
BLOCKER = "reporter"
"""The source name of the Reporter's readiness blocker."""


@dataclass(frozen=True)
class _SendProgress:
    """Timer: send the latest progress of each request that reported some."""


@dataclass(frozen=True)
class _Undelivered:
    """Why one outbox record was not delivered, and whether the others may still go out."""

    reason: str
    stop: bool
    transient: bool = False
    """GMS did not answer (rather than refused): worth retrying as soon as it answers again."""


class Reporter(PoolActor):
    """Delivers what the pool's tasks report to GMS."""

    def __init__(self, ctx: ChildContext, pool: PoolContext, backoff: Backoff | None = None) -> None:
        super().__init__(ctx, pool)
        self.outbox = outbox_of(pool)
        self.retry = RetryState(backoff or Backoff(min_s=1.0, max_s=RETRY_MAX_S, reset_after_s=300))
        self.terminal: OrderedDict[str, str] = OrderedDict()
        self.progress: OrderedDict[str, dict[str, Any]] = OrderedDict()
        """The latest unsent progress per request (at most one entry per running request)."""
        self.claimed: set[str] = set()
        """Requests whose first RUNNING was handed on (until their terminal result)."""
        self._flush_pending = False
        self._flush_timer: int | None = None
        self._progress_pending = False
        self._results_problem: str | None = None
        self._results_transient = False
        self._calls_problem: str | None = None
        self._published: str | None = None

    def setup(self) -> None:
        if self.pool.metrics is not None:  # read at each scrape: Tasks write, this removes
            self.pool.metrics.watch_outbox(self.pool.pool_id, self.outbox.__len__)
        self._flush()
        self.actor_ref.tell(ReportPresence())

    def release(self) -> None:
        self.pool.set_blocker(BLOCKER, None)  # a new Reporter finds out for itself

    def handle(self, message: Any) -> Any:
        if isinstance(message, Progress):
            self._progress(message)
        elif isinstance(message, _SendProgress):
            self._progress_pending = False
            self._send_progress()
        elif isinstance(message, Finish):
            self._finish(message)
        elif isinstance(message, FlushOutbox):
            self._flush_pending = False
            self._flush_timer = None
            self._flush()
        elif isinstance(message, ReportPresence):
            reported = self._presence(message.stopped)
            if not message.stopped:
                self._next_presence(reported)
        return None

    def _next_presence(self, reported: bool) -> None:
        """The next presence record: on the process's common 30 s tick, so every pool's record
        falls due at once and the reporters' strand wakes once a period for all of them (idle
        CPU: a wake-up after a long sleep costs milliseconds); while GMS fails, sooner, as it
        also tells when GMS is back."""
        if reported:
            self.tell_self_on_tick(PRESENCE_INTERVAL_S, ReportPresence())
        else:
            self.tell_self_after(PRESENCE_RETRY_S, ReportPresence())

    # -- progress --------------------------------------------------------------------------
    def _progress(self, message: Progress) -> None:
        if message.urn in self.terminal:
            return  # never RUNNING after a terminal result
        self.progress[message.urn] = message.aspect
        self.progress.move_to_end(message.urn)
        if message.urn not in self.claimed:
            # The first RUNNING goes out at once (the Task sends it once the run has lasted
            # ``running_after_s``): it is what tells another executor that receives a
            # duplicate message that the request runs here. Later ones coalesce.
            self.claimed.add(message.urn)
            self._send_progress()  # in this turn: a self-tell was one more turn per task
        elif not self._progress_pending:
            self._progress_pending = True
            self.tell_self_after(min(1.0, self.pool.pool.progress_interval_s), _SendProgress())

    def _send_progress(self) -> None:
        """Send the latest progress of each request; on the first failure drop the rest (the
        tasks report again within one interval, and a result wins over progress anyway)."""
        while self.progress:
            urn, aspect = self.progress.popitem(last=False)
            if urn in self.terminal:
                continue
            try:
                self._send(urn, aspect)
            except ExecutorError as exc:
                dropped = len(self.progress) + 1
                self.progress.clear()
                self.log.warning("progress of {} request(s) dropped: {}", dropped, exc)
                self._call_outcome(_problem(exc))
                return
            self._call_outcome(None)

    # -- results ---------------------------------------------------------------------------
    def _finish(self, message: Finish) -> None:
        # The sender has already made the result durable (``persist_result``).
        self._remember(message.urn, message.status)
        self.progress.pop(message.urn, None)
        self.claimed.discard(message.urn)
        if not self._flush_pending:  # else a flush (maybe a backed-off retry) is coming
            self._flush()  # in this turn: a self-told FlushOutbox was one more turn per task

    def _flush(self) -> None:
        """Send the pending terminal results, oldest first; stop at a failure that concerns
        every call (GMS unreachable, token refused) and come back after a backoff."""
        problem: str | None = None
        self._results_transient = False
        for key, record in self.outbox.pending():
            undelivered = self._deliver(key, record)
            if undelivered is None:
                continue
            problem, self._results_transient = undelivered.reason, undelivered.transient
            if undelivered.stop:
                break
        self._results_problem = f"results not delivered: {problem}" if problem else None
        self._publish()
        if problem is None:
            self.retry.succeeded()
            return
        delay = self.retry.failed(time.monotonic())
        self.log.warning("results waiting in the outbox ({}); retrying in {:.1f}s", problem, delay)
        if not self._flush_pending:
            self._flush_pending = True
            self._flush_timer = self.tell_self_after(delay, FlushOutbox())

    def _deliver(self, key: str, record: dict[str, Any]) -> _Undelivered | None:
        """Send one record; None once GMS holds a final result for it (ours or an earlier one)."""
        urn, aspect = record.get("urn"), record.get("aspect")
        if not isinstance(urn, str) or not isinstance(aspect, dict):
            return _Undelivered(f"outbox record {key!r} lacks a urn or an aspect", stop=False)
        status = str(record.get("status", ""))
        self._remember(urn, status)
        try:
            self._send(urn, aspect)
        except ImmutableError:
            self.log.info("GMS already holds a final result for {}; dropping ours", urn)
        except NotAllowedError as exc:
            self.log.warning("result for {} not delivered: GMS refused the token ({})", urn, exc)
            return _Undelivered(f"GMS refused the token ({exc})", stop=True)
        except FinalError as exc:
            self.log.error("result for {} not delivered: GMS refused it ({}); keeping it", urn, exc)
            return _Undelivered(f"GMS refused the result for {urn} ({exc})", stop=False)
        except ExecutorError as exc:
            self.log.warning("result for {} not delivered ({})", urn, exc)
            return _Undelivered(f"GMS not answering ({exc})", stop=True, transient=True)
        self._call_outcome(None)
        # Tell the poller before the outbox forgets it: the shutdown stops the tree once the
        # outbox is empty, and the settling tell must be queued before that stop.
        settle = Release(urn) if record.get("release") else Acknowledge(urn)
        self.ctx.directory.tell(POLLER, settle)
        self.outbox.remove(key)
        if self.pool.metrics is not None:
            self.pool.metrics.count_task(self.pool.pool_id, status)
        if self.pool.on_delivered is not None:
            self.pool.on_delivered(urn, status)
        return None

    # -- calls and readiness ---------------------------------------------------------------
    def _send(self, urn: str, aspect: dict[str, Any]) -> None:
        self.gms.ingest_proposal(aspects.EXECUTION_REQUEST_ENTITY, urn, aspects.RESULT_ASPECT, aspect)

    def _call_outcome(self, problem: str | None) -> None:
        """Record whether the last progress or presence call went through; once GMS answers
        again, results that wait for a backed-off retry go out now rather than later."""
        self._calls_problem = problem
        self._publish()
        if problem is None and self._results_transient and self._flush_timer is not None:
            self.timers.cancel(self._flush_timer)
            self._flush_timer = None
            self.actor_ref.tell(FlushOutbox())

    def _publish(self) -> None:
        """Keep the pool not ready while results wait or GMS does not answer; say why."""
        reason = self._results_problem or self._calls_problem
        if reason != self._published:
            self._published = reason
            self.pool.set_blocker(BLOCKER, reason)

    def _presence(self, stopped: bool) -> bool:
        """Write the presence record; False if GMS did not take it."""
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
            self._call_outcome(_problem(exc))
            return False
        self._call_outcome(None)
        return True

    def _remember(self, urn: str, status: str) -> None:
        self.terminal[urn] = status
        while len(self.terminal) > REMEMBERED_TERMINALS:
            self.terminal.popitem(last=False)


def _problem(exc: ExecutorError) -> str:
    """What a failed progress or presence call says about GMS, for ``/readyz``."""
    if isinstance(exc, NotAllowedError):
        return f"GMS refused the token ({exc})"
    if isinstance(exc, RetryableError):
        return f"GMS not answering ({exc})"
    return f"GMS refused a call ({exc})"


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


def hand_over_result(pool: PoolContext, ctx: ChildContext, finish: Finish) -> None:
    """A terminal result made durable (``persist_result``), then told to the pool's Reporter:
    a tell lost to a restarting Reporter is found in the outbox by the next one."""
    persist_result(pool, finish)
    ctx.directory.tell(REPORTER, finish)


def has_pending_result(pool: PoolContext, urn: str) -> bool:
    """True while a terminal result of ``urn`` waits in the outbox (finished, not yet delivered)."""
    return outbox_of(pool).has(_key(urn))


def outbox_of(pool: PoolContext) -> Outbox:
    """The pool's outbox, opened once per pool (its key read, stale temps swept) and shared by the
    Reporter and the Tasks: each write is an atomic rename, safe from any thread."""
    return pool.outbox.get(
        lambda: Outbox(pool.state_dir / "outbox", pool_id=pool.pool_id, binding=pool.token))


def _key(urn: str) -> str:
    return urn.rsplit(":", 1)[-1]
