"""Values that describe a supervised tree: child specs, policies and the supervision messages."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executor.backoff import Backoff

if TYPE_CHECKING:
    import pykka

    from executor.supervision.directory import Directory


class Restart(enum.Enum):
    """When a child that ended is started again (OTP's restart types)."""

    PERMANENT = "permanent"
    """Always: a long-lived service."""
    TRANSIENT = "transient"
    """Only after a failure; a normal exit is final."""
    TEMPORARY = "temporary"
    """Never: one piece of work; its end is only reported."""


class Strategy(enum.Enum):
    """Which children restart together."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that ended."""
    REST_FOR_ONE = "rest_for_one"
    """The child that ended and every child started after it."""


@dataclass(frozen=True)
class ChildContext:
    """What a child is given at start: who it is, whom to tell, where to find siblings."""

    name: str
    path: str
    """Slash-separated position in the tree, e.g. ``root/pool:default/poller``."""
    incarnation: int
    parent: pykka.ActorRef[Any] | None
    directory: Directory
    """Name -> current ref of this child's siblings (and itself)."""
    listed: bool = True
    """Whether the child appears in ``directory`` under ``name`` (not so for dynamic tasks)."""


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child; ``start`` returns the new actor's ref without waiting for it."""

    name: str
    start: Callable[[ChildContext], pykka.ActorRef[Any]]
    restart: Restart = Restart.PERMANENT
    stop_timeout_s: float = 5.0


@dataclass(frozen=True)
class SupervisorPolicy:
    """Strategy, restart intensity (at most ``max_restarts`` in ``period_s``) and backoff."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 5
    period_s: float = 60.0
    backoff: Backoff = field(default_factory=lambda: Backoff(min_s=0.5, max_s=30.0, reset_after_s=60.0))
    liveness_interval_s: float = 1.0
    """How often the safety net checks that every child is still alive."""


@dataclass(frozen=True)
class ChildExited:
    """A child tells its parent it ended (sent from its own thread as it dies)."""

    name: str
    incarnation: int
    failed: bool
    error: str | None = None


@dataclass(frozen=True)
class RestartChild:
    """The supervisor's own timer message: start ``name`` again (if still wanted)."""

    name: str
    generation: int


@dataclass(frozen=True)
class CheckChildren:
    """The supervisor's own timer message: the liveness safety net."""
