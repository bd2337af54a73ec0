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
    """Timer: receive a batch if there is capacity and a lease."""


@dataclass(frozen=True)
class ExtendLeases:
    """Timer: keep the in-flight messages invisible to other executors."""


@dataclass(frozen=True)
class Capacity:
    """From the runner: free default-weight slots, counting ``accepted`` RunRequests so far
    from poller incarnation ``poller_incarnation``; the poller subtracts those still in transit.
    """

    free_slots: int
    poller_incarnation: int = 0
    accepted: int = 0


@dataclass(frozen=True)
class CapacityWanted:
    """From a (re)started poller: send me the current ``Capacity``."""


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
class RunRequest:
    """From the poller: a decoded message asks to run this execution request."""

    urn: str
    message_id: str
    poller_incarnation: int
    sent_timestamp_s: float | None = None


@dataclass(frozen=True)
class WeightKnown:
    """From a Task: its request's weight (``EXECUTOR_TASK_WEIGHT``), once the input is read."""

    urn: str
    weight: float


@dataclass(frozen=True)
class PollSignals:
    """Timer: read ``dataHubExecutionRequestSignal`` for every running request."""


@dataclass(frozen=True)
class Drain:
    """Shutdown: stop receiving; interrupt what still runs after ``deadline_monotonic``."""

    deadline_monotonic: float


@dataclass(frozen=True)
class TaskSettled:
    """From a Task to the runner, before it stops: its request needs nothing more from it."""

    urn: str
    status: str | None
    """The terminal status it handed to the reporter, or None if it reported nothing."""


@dataclass(frozen=True)
class RunningCount:
    """Ask (from the main thread only): how many tasks still run."""


@dataclass(frozen=True)
class InterruptAll:
    """Stop every running task now (drain over, or a second signal)."""

    reason: str


# -- Task ------------------------------------------------------------------------------------
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
