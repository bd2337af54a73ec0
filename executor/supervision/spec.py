"""Values that describe a supervised tree: child specs, policies and the supervision messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from executor.backoff import Backoff

if TYPE_CHECKING:
    import pykka

    from executor.supervision.directory import Directory


class Parent(Protocol):
    """Whom a child tells how it ended: its supervisor's ref, or a stand-in that routes the
    notice to whichever incarnation of an actor currently looks after the child."""

    def tell(self, message: Any) -> None:
        """Deliver ``message`` (``ChildExited`` and the child's own reports)."""


class Lifeline:
    """The threads of one incarnation of a child, as its supervisor sees it.

    pykka marks an actor dead *before* its ``on_failure``/``on_stop`` run, so ``is_alive()`` is
    no proof that the old instance has let go of what it held. Its thread ending is, and for a
    supervisor, the threads of its own children too: they are linked to its lifeline, so a
    subtree counts as ended only when every thread in it has.
    """

    def __init__(self) -> None:
        self._known = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._links: list[Lifeline] = []

    def attach(self) -> None:
        """Record the calling thread as the child's (first thing in ``on_start``)."""
        self._thread = threading.current_thread()
        self._known.set()

    def link(self, child: Lifeline) -> None:
        """Count ``child``'s threads as part of this incarnation (its own children's)."""
        with self._lock:
            self._links = [*(line for line in self._links if not line.ended()), child]

    def ended(self) -> bool:
        """True once the child's thread, and every linked one, has run to its end."""
        thread = self._thread
        if not self._known.is_set() or thread is None or thread.is_alive():
            return False
        with self._lock:
            links = list(self._links)
        return all(line.ended() for line in links)

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the thread and every linked one to end; True when they have."""
        deadline = time.monotonic() + timeout_s
        if not self._known.wait(max(0.0, timeout_s)) or self._thread is None:
            return False
        if self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
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
    """The supervisor's own lifeline: a thread the child starts that must outlive the child's
    restart but not its supervisor's (a pool's Tasks, started by its runner) is linked here."""


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


@dataclass(frozen=True)
class ChildVanished:
    """The supervisor's note to itself: ``name``'s thread ended; handled after any ``ChildExited``
    that was already in the mailbox, so that a notice sent just before the end is not missed."""

    name: str
    incarnation: int
