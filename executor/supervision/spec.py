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

    A supervisor is *told* of both moments rather than looking for them (``watch``): the
    ending began (``dying``: the actor is marked dead, its teardown runs) and the loops ended;
    so nothing in it has to look periodically at a child at rest (idle CPU, issue 12).
    """

    def __init__(self) -> None:
        self._known = threading.Event()
        self._end: threading.Event | None = None
        self._lock = threading.Lock()
        self._links: list[Lifeline] = []
        self._on_dying: list[Callable[[], None]] = []
        self._on_ended: list[Callable[[], None]] = []
        """Called once, when ``ended()`` first comes true; emptied then."""
        self._fired = False

    def attach(self, end: threading.Event) -> None:
        """Record the event set when the child's loop has ended (first thing in ``on_start``)."""
        self._end = end
        self._known.set()

    def link(self, child: Lifeline) -> None:
        """Count ``child``'s loops as part of this incarnation (its own children's)."""
        with self._lock:
            self._links = [*(line for line in self._links if not line.ended()), child]
        child.when_ended(self.loop_over)

    def watch(self, on_dying: Callable[[], None], on_ended: Callable[[], None]) -> None:
        """Call ``on_dying`` when the ending begins and ``on_ended`` once every loop has ended
        (at once if it has). Both run on whichever thread brought the news: keep them short."""
        with self._lock:
            self._on_dying.append(on_dying)
        self.when_ended(on_ended)

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every loop has ended (at once if that has happened)."""
        with self._lock:
            if not self._fired:
                self._on_ended.append(callback)
                return
        callback()

    def dying(self) -> None:
        """The actor was marked dead and its teardown begins (called by the actor; may repeat)."""
        with self._lock:
            callbacks, self._on_dying = self._on_dying, []
        for callback in callbacks:
            callback()

    def loop_over(self) -> None:
        """The child's loop, or a linked one, has ended: tell the watchers if every loop has."""
        if not self.ended():
            return
        with self._lock:
            if self._fired:
                return
            self._fired = True
            callbacks, self._on_ended, self._on_dying = self._on_ended, [], []
        for callback in callbacks:
            callback()

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
class ChildEnding:
    """Told by the lifeline of ``name``'s incarnation as its ending begins (marked dead, teardown
    running): the supervisor gives that teardown its stop timeout (``CheckChild``)."""

    name: str
    incarnation: int


@dataclass(frozen=True)
class CheckChild:
    """The supervisor's one-shot timer message, a stop timeout after ``ChildEnding``: if that
    incarnation is still dead without a word and its loops still run, stop waiting for them."""

    name: str
    incarnation: int


@dataclass(frozen=True)
class ChildVanished:
    """Told by the lifeline of ``name``'s incarnation once all its loops have ended. Sent after any
    ``ChildExited`` of that incarnation (that is told before the loop's last turn), so it
    counts as a death without notice only when none came."""

    name: str
    incarnation: int
