"""Strands: several actors that share one thread.

pykka's ``ThreadingActor`` gives every actor a thread of its own, and most of the executor's
actors are idle nearly all the time: a thread each cost four threads per pool more than the work
needs (issue 12). A strand is one thread that runs the *turns* of several actors: a turn handles
one message of one actor to completion; an actor with more messages goes to the back of the
line. So each actor sees its messages in the order they were sent, no actor starves the others
(round-robin, one message per turn), and two turns never overlap.

A turn that blocks holds up every actor of its strand, so only actors whose handlers never block
long may share one. Waits inside the actor machinery itself (a ``StrandFuture``'s ``get``, a
lifeline's ``join``) made on a strand's thread run the turns of the strand's other actors
meanwhile (``Strand.wait_until``; never the turn of an actor already in a turn lower on the
stack): a supervisor stopping a child on its own strand cannot deadlock, and the strand's other
actors stay live while it waits. An ask of an actor that *is* lower on the stack could never be
answered; it fails at once (``StrandDeadlock``, a ``pykka.Timeout``) instead of hanging.

Liveness is read, not beaten (``stall_s``): the strand records when its current turn began and
when each member in its line was put there, so whoever asks (``/healthz``) sees how long it has
been stuck, and an idle strand costs nothing and reads live.

The thread starts with the strand's first actor and ends after its last one has ended. A
strand made with ``spare`` (a Task's, one per task) runs on one of those spare threads instead
(``spare_threads``): the thread waits a moment for the next task's strand rather than ending.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from executor.supervision.spare_threads import Job, SpareThreads
from executor.supervision.threadnames import comm_of, name_this_thread

POLL_S = 0.005
"""How often a nested wait looks again at a condition that another thread may have made true
(a future set, a loop ended elsewhere). Nested waits happen only while stopping actors."""

_local = threading.local()


class Member(Protocol):
    """What a strand needs of an actor on it (``executor.supervision.strandactor``)."""

    queued: bool
    """Whether the actor is in the strand's line (set and read under the strand's lock)."""

    queued_at: float
    """When it was put in the line (the strand's clock; meaningful while ``queued``)."""

    def strand_turn(self) -> bool:
        """Run one turn (start, or one message); True once the actor has ended for good."""

    def strand_pending(self) -> bool:
        """Whether messages wait in the inbox (called under the strand's lock)."""


def current_strand() -> Strand | None:
    """The strand whose thread is calling, if any."""
    strand: Strand | None = getattr(_local, "strand", None)
    return strand


class Strand:
    """One thread that runs its members' turns in turn; see the module doc."""

    def __init__(self, name: str, comm: str | None = None, spare: SpareThreads | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        """The thread's Python name (``threading``, py-spy)."""
        self.comm = comm or comm_of(name)
        """The thread's kernel name (``top -H``, ``ps -L``), at most 15 bytes."""
        self.lock = threading.Lock()
        """Guards the line, the members and ``_sleeping`` (a plain lock: a Condition's ``wait``
        allocates a lock per wait and runs in Python; the thread sleeps on ``_wake`` instead)."""
        self._wake = threading.Lock()
        self._wake.acquire()
        """Released (once) to wake the strand's thread; held while nobody has woken it."""
        self._sleeping = False
        """The thread waits on ``_wake`` (or is about to): whoever schedules a member wakes it."""
        self._ready: deque[Member] = deque()
        self._members: dict[int, Member] = {}
        """The live members by id: the strand keeps them alive, as a thread keeps its actor
        (inboxes and refs hold an actor weakly, so an ended one and its sockets are freed)."""
        self._spare = spare
        """Where its thread comes from when not made anew (``spare_threads``)."""
        self._thread: threading.Thread | Job | None = None
        self._stack: list[Member] = []
        """Members in a turn on this thread, outermost first (touched only by the thread)."""
        self.threads_started = 0
        self.clock = clock
        """Times turns and waits in the line (injectable: a test ages a turn without waiting)."""
        self._turn_began: float | None = None
        """When the thread went into the handler it runs now; None while it waits for work or
        runs the line in a nested wait (``wait_until``: it serves the others, it is not stuck)."""
        self.turns = 0
        """Turns run so far (what a test counts to see a strand at rest)."""

    def __repr__(self) -> str:
        return f"Strand({self.name!r}, {len(self._members)} member(s))"

    def __bool__(self) -> bool:
        """A strand is true even with no members (``len`` would make an empty one false)."""
        return True

    def __len__(self) -> int:
        """How many actors run on this strand now."""
        with self.lock:
            return len(self._members)

    def join(self, member: Member) -> None:
        """Add ``member`` (its first turn is its start); starts the thread if it is not running."""
        with self.lock:
            self._members[id(member)] = member
            self.schedule(member)
            if self._thread is None:
                self.threads_started += 1
                if self._spare is not None:
                    self._thread = self._spare.start(self._run, self.name, self.comm)
                else:
                    self._thread = threading.Thread(target=self._run, name=self.name)
                    self._thread.start()

    def schedule(self, member: Member) -> None:
        """Put ``member`` at the end of the line unless it is in it. Call with ``lock`` held."""
        if not member.queued:
            member.queued = True
            member.queued_at = self.clock()
            self._ready.append(member)
            if self._sleeping:
                self._sleeping = False
                self._wake.release()

    def stall_s(self) -> float:
        """How long the strand has kept someone waiting: the age of the turn in progress or of
        the oldest wait in its line of a member it could run, whichever is older; 0 when idle.

        A member in a turn lower on the stack (a supervisor waiting for a child to stop, while
        the thread runs the others' turns) waits for its own turn to end: that wait is its own
        choice, bounded by its own deadline, and not counted.
        """
        with self.lock:
            now = self.clock()
            began = self._turn_began
            stall = 0.0 if began is None else now - began
            stack = list(self._stack)  # one C-level copy: the thread changes it without the lock
            for member in self._ready:
                if not any(member is active for active in stack):
                    return max(stall, now - member.queued_at)  # the line is in order
        return max(0.0, stall)

    def in_turn(self, member: object) -> bool:
        """Whether ``member`` is in a turn on this thread (call on the strand's thread)."""
        return any(member is active for active in self._stack)

    def wait_until(self, done: Callable[[], bool], timeout_s: float | None) -> bool:
        """On this strand's thread: run other members' turns until ``done()`` or the timeout.

        True when ``done()`` came true. A member in a turn lower on the stack (the waiter among
        them) gets no nested turn: its messages wait, in order, until its turn has ended.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._turn_began = None  # the thread serves the line now
        try:
            while not done():
                left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
                if left <= 0:
                    return False
                member = self._take(left)
                if member is not None:
                    self._turn(member)
            return True
        finally:
            if self._stack:  # back in the waiting handler: its turn goes on from now
                self._turn_began = self.clock()

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        if self._spare is None:  # a spare thread's job is named by ``spare_threads`` already
            name_this_thread(self.name, self.comm)
        _local.strand = self
        try:
            while (member := self._take(None)) is not None:
                self._turn(member)
        finally:
            _local.strand = None  # a spare thread runs other work next

    def _take(self, timeout_s: float | None) -> Member | None:
        """The next member whose turn it is. Without a timeout (the thread's own loop) it waits
        for one, and returns None once the strand has no members left: the thread then ends.
        With one (a nested wait) it waits at most that long. Only the strand's thread calls it,
        so one thread at most sleeps on ``_wake``."""
        waited = False
        while True:
            with self.lock:
                member = self._first_ready()
                if member is not None or waited:
                    return member
                if timeout_s is None and not self._members:
                    self._thread = None
                    return None
                self._sleeping = True
            self._sleep(timeout_s)
            waited = timeout_s is not None

    def _sleep(self, timeout_s: float | None) -> None:
        """Wait until ``schedule`` wakes the thread, or the timeout passes."""
        if self._wake.acquire(timeout=-1 if timeout_s is None else max(0.0, timeout_s)):
            return
        with self.lock:
            if self._sleeping:
                self._sleeping = False  # nobody woke it: the wake lock is still held
            else:
                self._wake.acquire()  # woken as the wait timed out: take back that release

    def _first_ready(self) -> Member | None:
        for member in self._ready:
            if not self.in_turn(member):
                self._ready.remove(member)
                member.queued = False
                return member
        return None

    def _turn(self, member: Member) -> None:
        self._stack.append(member)
        self.turns += 1
        self._turn_began = self.clock()
        try:
            ended = member.strand_turn()
        finally:
            self._turn_began = None
            self._stack.pop()
        with self.lock:
            if ended:
                self._members.pop(id(member), None)
                if member.queued:
                    self._ready.remove(member)
                    member.queued = False
            elif member.strand_pending():
                self.schedule(member)


def wait_until(
    done: Callable[[], bool], timeout_s: float | None, block: Callable[[float | None], object]
) -> bool:
    """Wait for ``done()`` up to ``timeout_s``: on a strand's thread by running the strand's
    other turns meanwhile, elsewhere with ``block(timeout)`` (an event's ``wait``). True when done."""
    strand = current_strand()
    if strand is not None:
        return strand.wait_until(done, timeout_s)
    if not done():
        block(None if timeout_s is None else max(0.0, timeout_s))
    return done()
