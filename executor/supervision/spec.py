"""Values that describe a supervised tree: child specs, policies and the supervision messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from executor.backoff import Backoff
from executor.supervision.strand import wait_until

if TYPE_CHECKING:
    import pykka

    from executor.supervision.directory import Directory
    from executor.supervision.strand import Strand


class Parent(Protocol):
    """Whom a child tells how it ended: its supervisor's ref, or a stand-in that routes the
    notice to whichever incarnation of an actor currently looks after the child."""

    def tell(self, message: Any) -> None:
        """Deliver ``message`` (``ChildExited`` and the child's own reports)."""


class Lifeline:
    """The loops of one incarnation of a child, as its supervisor sees it.

    pykka marks an actor dead *before* its ``on_failure``/``on_stop`` run, so ``is_alive()`` is
    no proof that the old instance has let go of what it held. Its loop ending is (the last turn
    of a ``StrandActor``, after its teardown: ``loop_ended``), and for a supervisor, the loops
    of its own children too: they are linked to its lifeline, so a subtree counts as ended only
    when every loop in it has. Waits made on a strand's thread run the strand's other actors
    meanwhile (``executor.supervision.strand``), so a supervisor may wait for a child that
    shares its strand.
    """

    def __init__(self) -> None:
        self._known = threading.Event()
        self._end: threading.Event | None = None
        self._lock = threading.Lock()
        self._links: list[Lifeline] = []

    def attach(self, end: threading.Event) -> None:
        """Record the event set when the child's loop has ended (first thing in ``on_start``)."""
        self._end = end
        self._known.set()

    def link(self, child: Lifeline) -> None:
        """Count ``child``'s loops as part of this incarnation (its own children's)."""
        with self._lock:
            self._links = [*(line for line in self._links if not line.ended()), child]

    def ended(self) -> bool:
        """True once the child's loop, and every linked one, has run to its end."""
        end = self._end
        if not self._known.is_set() or end is None or not end.is_set():
            return False
        with self._lock:
            links = list(self._links)
        return all(line.ended() for line in links)

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the loop and every linked one to end; True when they have."""
        deadline = time.monotonic() + timeout_s
        if not wait_until(self._known.is_set, max(0.0, timeout_s), self._known.wait) or self._end is None:
            return False
        end = self._end
        wait_until(end.is_set, max(0.0, deadline - time.monotonic()), end.wait)
        with self._lock:
            links = list(self._links)
        for line in links:
            line.join(deadline - time.monotonic())
        return self.ended()


@dataclass(frozen=True)
class ChildContext:
    """What a child is given at start: who it is, whom to tell, where to find siblings."""

    name: str
    path: str
    """Slash-separated position in the tree, e.g. ``root/pool:default/poller``."""
    incarnation: int
    parent: Parent | None
    directory: Directory
    """Name -> current ref of this child's siblings (and itself)."""
    listed: bool = True
    """Whether the child appears in ``directory`` under ``name`` (not so for dynamic tasks)."""
    lifeline: Lifeline = field(default_factory=Lifeline, compare=False)
    """Where the child's thread is recorded, so that its supervisor can tell when it has ended."""
    subtree: Lifeline | None = field(default=None, compare=False)
    """The supervisor's own lifeline: an actor the child starts that must outlive the child's
    restart but not its supervisor's (a pool's Tasks, started by its runner) is linked here."""
    strand: Strand | None = field(default=None, compare=False)
    """The thread the child shares with others (``ChildSpec.strand``); None: one of its own."""
    spare_thread: bool = False
    """A strand of its own, run on a spare thread (``spare_threads``) rather than a new one:
    for short-lived children started back to back (a pool's Tasks)."""


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child; ``start`` returns the new actor's ref without waiting for it.

    Every child is *permanent* in OTP's sense: restarted whenever it ends, normally or not.
    """

    name: str
    start: Callable[[ChildContext], pykka.ActorRef[Any]]
    stop_timeout_s: float = 5.0
    """How long an orderly stop may take; also how long a dead child's teardown may take before
    its supervisor gives up waiting and escalates rather than start a second instance."""
    parks: bool = False
    """Counted against its own restart intensity; when it exceeds it, the child is *parked*
    (left stopped, restarted after the policy's ``park_backoff``) instead of failing the
    supervisor, which escalates only once every such child is parked at the same time."""
    stop_shared: Callable[[], None] | None = None
    """Stops what outlives each incarnation of the child but not its supervisor (a runner's
    Tasks, which a new runner adopts): called when the supervisor stops the child for good,
    once the child has stopped (so no incarnation can start more), whether or not one ran."""
    strand: Strand | None = None
    """The strand every incarnation runs on (``executor.supervision.strand``), shared with other
    actors whose handlers never block long; None: a thread of its own."""


@dataclass(frozen=True)
class SupervisorPolicy:
    """One-for-one restarts: intensity (at most ``max_restarts`` in ``period_s``) and backoff."""

    max_restarts: int = 5
    period_s: float = 60.0
    backoff: Backoff = field(default_factory=lambda: Backoff(min_s=0.5, max_s=30.0, reset_after_s=60.0))
    liveness_interval_s: float = 1.0
    """How often the safety net checks that every child is still alive."""
    park_backoff: Backoff = field(
        default_factory=lambda: Backoff(min_s=300.0, max_s=1800.0, reset_after_s=3600.0)
    )
    """How long a parked child stays stopped (``ChildSpec.parks``); grows while it keeps failing."""


@dataclass(frozen=True)
class ChildExited:
    """A child tells its parent it ended (sent from its own strand as it dies)."""

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


@dataclass(frozen=True)
class ChildVanished:
    """The supervisor's note to itself: ``name``'s thread ended; handled after any ``ChildExited``
    that was already in the mailbox, so that a notice sent just before the end is not missed."""

    name: str
    incarnation: int
