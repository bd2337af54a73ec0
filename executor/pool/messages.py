"""Every message the pool's actors exchange: small frozen dataclasses, grouped by receiver.

Actors talk with ``tell`` (a failure lands at the supervisor, not the sender) and find each
other through their pool's ``Directory`` by these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pykka

from executor.datahub.lease import Lease

LEASER, RESOLVER, REPORTER, RUNNER, POLLER = "leaser", "resolver", "reporter", "runner", "poller"


# -- CredentialLeaser ------------------------------------------------------------------------
@dataclass(frozen=True)
class RefreshLease:
    """Timer or request: fetch a new lease from GMS now."""

    reason: str = "scheduled"


@dataclass(frozen=True)
class LeaseWanted:
    """From a (re)started poller: send me the current lease if there is one."""


@dataclass(frozen=True)
class LeaseRejected:
    """From the poller: AWS refused the leased credentials (ExpiredToken and the like)."""

    error: str


# -- QueuePoller -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaseGranted:
    """A fresh lease: the queue URL, region and temporary credentials to use."""

    lease: Lease


@dataclass(frozen=True)
class LeaseLost:
    """No valid lease any more: stop polling until a new one comes."""

    reason: str


@dataclass(frozen=True)
class Poll:
    """Receive a batch if there is capacity and a lease (the poller's loop tells it itself).

    ``seq`` numbers the loop's own: one that is not the latest is stale and ignored, so the
    safety net can restart a loop whose ``Poll`` was lost without ever running two loops;
    0 (a nudge from outside the loop) is always taken and restarts it.
    """

    seq: int = 0


@dataclass(frozen=True)
class Capacity:
    """From the runner: room came free in the pool's task book (a Task ended, or weighs less
    than counted) while the poller was parked there for the lack of it (``TaskBook.poller_room``).

    The poller reads the room itself from the book, which both sides share across restarts,
    so a lost ``Capacity`` costs only time: a new runner wakes a parked poller at its start,
    and the poller looks again at each of its housekeeping rounds (``executor.pool.poll_duties``).
    """


@dataclass(frozen=True)
class LiveTasks:
    """From the runner, answering ``TasksWanted``: the requests that have a live Task now."""

    round: int
    urns: frozenset[str]


@dataclass(frozen=True)
class Acknowledge:
    """GMS accepted the terminal result (or the request needs no run): delete the message."""

    urn: str


@dataclass(frozen=True)
class Release:
    """Give the message back to the queue for another executor: at once (visibility 0), or
    after ``delay_s`` (the request runs elsewhere; look again later)."""

    urn: str
    delay_s: int = 0


@dataclass(frozen=True)
class Unrunnable:
    """From a Task: GMS knows no such request; the message is poison (see ``executor.pool.poison``)."""

    urn: str
    reason: str


@dataclass(frozen=True)
class StopReceiving:
    """Shutdown has begun: receive nothing more; keep extending and settling."""


# -- TaskRunner ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskStarted:
    """From the poller: it started a Task while the runner polled no KILL signals (the book
    was empty): schedule that poll."""

    urn: str


@dataclass(frozen=True)
class TasksWanted:
    """From the poller's reconciliation: answer ``LiveTasks`` for this round.

    The poller adds each Task to the book before it asks, so the answer covers every message
    held then: one missing from it has no Task (its start was cut short by a crash).
    """

    round: int


@dataclass(frozen=True)
class WeightKnown:
    """From a Task: its request's weight (``EXECUTOR_TASK_WEIGHT``), once the input is read."""

    urn: str
    weight: float


@dataclass(frozen=True)
class TrimSoon:
    """From a Task's end that left the pool's task book empty (``taskbook.RunnerLink``): look
    whether to give the freed C heap back once the pool has rested (one look at a time: the
    book says whether one is scheduled, so tasks back to back tell this once per look)."""


@dataclass(frozen=True)
class PollSignals:
    """Timer: read ``dataHubExecutionRequestSignal`` for every running request."""


@dataclass(frozen=True)
class Drain:
    """Shutdown: stop receiving; interrupt what still runs after ``deadline_monotonic``."""

    deadline_monotonic: float


@dataclass(frozen=True)
class TaskSettled:
    """From a Task to the pool's task book, before it stops: its request needs nothing more
    from it (``taskbook.RunnerLink`` writes it there; the runner is not told)."""

    urn: str
    status: str | None
    """The terminal status it handed to the reporter, or None if it reported nothing."""


@dataclass(frozen=True)
class InterruptAll:
    """Stop every running task now (drain over, or a second signal)."""

    reason: str


# -- Task ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRequest:
    """A decoded message asks to run this execution request. Not a message any more: the
    Task's start argument (the poller starts it, ``executor.pool.task_start``)."""

    urn: str
    message_id: str
    sent_timestamp_s: float | None = None


@dataclass(frozen=True)
class Admitted:
    """From the runner, answering ``WeightKnown``: the request's weight fits now; start it."""


@dataclass(frozen=True)
class Prepare:
    """The Task's first step: read the request from GMS and decide what to do."""


@dataclass(frozen=True)
class SecretsResolved:
    """From the resolver: the values of the recipe's secret references."""

    values: dict[str, str] = field(repr=False)


@dataclass(frozen=True)
class SecretsFailed:
    """From the resolver: some secret is missing (names only) or a store failed."""

    error: str
    missing: tuple[str, ...] = ()
    retryable: bool = False


@dataclass(frozen=True)
class SandboxExited:
    """From the sandbox's own thread: the recipe's process tree is gone."""

    result: Any


@dataclass(frozen=True)
class SendProgress:
    """Timer: report RUNNING with the current log tail."""


@dataclass(frozen=True)
class FirstRunning:
    """Timer: the run has lasted ``running_after_s`` since its admission; report RUNNING."""


@dataclass(frozen=True)
class ResolveAgain:
    """Timer: ask the resolver again after a retryable failure."""


@dataclass(frozen=True)
class ResolveTimeout:
    """Timer: attempt ``attempt`` of ``Resolve`` got no answer in time."""

    attempt: int


@dataclass(frozen=True)
class Cancel:
    """Stop the recipe; ``status`` is what the result will say (CANCELLED, FAILURE...)."""

    reason: str
    status: str = "CANCELLED"
    interrupted: bool = False
    """Executor shutdown: report an overwritable FAILURE and release the message."""


# -- SecretResolver --------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolve:
    """Resolve ``names`` through the pool's stores and tell the answer to ``reply_to``."""

    names: tuple[str, ...]
    reply_to: pykka.ActorRef[Any]


# -- Reporter --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """A RUNNING update; the latest per request wins, and it is dropped after a terminal one."""

    urn: str
    aspect: dict[str, Any]


@dataclass(frozen=True)
class Finish:
    """A terminal result: written to the outbox first, then sent until GMS accepts it."""

    urn: str
    aspect: dict[str, Any]
    status: str
    release: bool = False
    """True for an interruption: once GMS has it, give the message back instead of deleting it."""


@dataclass(frozen=True)
class FlushOutbox:
    """Timer: retry the terminal results still waiting in the outbox."""


@dataclass(frozen=True)
class ReportPresence:
    """Timer: write ``dataHubRemoteExecutorStatus``."""

    stopped: bool = False


@dataclass(frozen=True)
class Beat:
    """Timer: record this actor's heartbeat for ``/healthz``."""
