"""``StrandActor``: a pykka actor type whose actors run on a ``Strand`` (a shared thread).

pykka leaves new actor types to three hooks (``_create_actor_inbox``, ``_create_future``,
``_start_actor_loop``) and a loop (``Actor._actor_loop``) that a thread runs start to end. Here
the loop is cut into turns, one per message, that the strand interleaves with its other actors'
turns; each turn does what one pass of pykka's loop does, with the same hooks and outcomes:
``on_start`` first (a failure there stops the actor), a failing ``tell`` handler ->
``on_failure``, a failing ``ask`` handler -> the exception to the asker, a stop -> ``on_stop``,
and at the end every message still in the inbox answered as pykka does (an ask:
``ActorDeadError``; a stop: done). One thing is stricter than pykka: a message that arrives
after that end is answered at once (an ask fails with ``ActorDeadError``) instead of sitting in
an inbox nobody reads.

``loop_ended`` is set after the last turn: what a restart waits for (the old incarnation has let
go of everything), where a ``ThreadingActor``'s supervisor waited for its thread to end.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections import deque
from typing import Any, TypeVar

import pykka
from pykka import messages
from pykka._envelope import Envelope

from executor.supervision.strand import Strand, current_strand

T = TypeVar("T")
logger = logging.getLogger("pykka")


class StrandDeadlock(pykka.Timeout):
    """An ask on a strand's thread whose answer can never come: the asked actor is in a turn
    lower on this same thread's stack, so its next turn starts only after this wait has ended.

    A ``pykka.Timeout``, so an asker with a deadline recovers as from any timeout, at once
    instead of at the deadline, and an asker without one gets this error instead of a hang."""


class StrandFuture(pykka.ThreadingFuture[T]):
    """A ``ThreadingFuture`` whose ``get`` on a strand's thread runs the strand's other turns
    while it waits: an actor that asks an actor of its own strand gets its answer instead of a
    deadlock. Only an actor lower on the stack cannot be given a turn: that wait fails at once
    (``StrandDeadlock``)."""

    asked: weakref.ref[StrandActor] | None = None
    """The actor that holds the ask, when it runs on a strand (set as the ask is put)."""

    def get(self, *, timeout: float | None = None) -> Any:
        strand = current_strand()
        if strand is not None and not self._settled():
            asked = self.asked() if self.asked is not None else None
            if asked is not None and strand.in_turn(asked):
                raise StrandDeadlock(f"{asked} is in a turn lower on {strand.name}'s stack")
            strand.wait_until(self._settled, timeout)
            if timeout is not None:
                timeout = 0.0 if not self._settled() else timeout
        return super().get(timeout=timeout)

    def _settled(self) -> bool:
        return self._result is not None or self._get_hook is not None


class StrandInbox:
    """An actor's inbox on a strand: a message put here puts the actor in the strand's line.

    It holds its actor weakly, as pykka's ``ActorRef`` does: a ref kept anywhere (a directory,
    a timer entry) must not keep an ended actor, and the clients and sockets it held, alive.
    """

    def __init__(self, strand: Strand, actor: StrandActor) -> None:
        self._strand = strand
        self._actor = weakref.ref(actor)
        self._name = str(actor)
        self._items: deque[Envelope[Any]] = deque()
        self._closed = False

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._strand.lock:
            actor = self._actor()
            if not self._closed and actor is not None:
                if isinstance(envelope.reply_to, StrandFuture):
                    envelope.reply_to.asked = self._actor
                self._items.append(envelope)
                self._strand.schedule(actor)
                return
        _answer_dead(envelope, self._name)

    def get(self) -> Envelope[Any]:
        with self._strand.lock:
            return self._items.popleft()

    def empty(self) -> bool:
        with self._strand.lock:
            return not self._items

    def holds_any(self) -> bool:
        """Whether messages wait; for the strand, which holds its lock when it asks."""
        return bool(self._items)

    def close(self) -> None:
        """Take no more messages (those already in stay, for the end to answer)."""
        with self._strand.lock:
            self._closed = True


class StrandActor(pykka.Actor):
    """An actor that runs on ``strand``; pass a strand of its own for a thread of its own."""

    def __init__(self, strand: Strand) -> None:
        self.strand = strand
        self.queued = False
        self.queued_at = 0.0
        self.turns = 0
        """Turns this actor has run (its start and each message): what a test counts to see
        that nothing is delivered to it at rest."""
        self.loop_ended = threading.Event()
        """Set once the actor's last turn is over (its end handled, its inbox answered)."""
        self._began = False
        super().__init__()

    def _create_actor_inbox(self) -> StrandInbox:  # type: ignore[override]
        return StrandInbox(self.strand, self)

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return StrandFuture()

    def _start_actor_loop(self) -> None:
        self.strand.join(self)

    # -- turns (called by the strand) ------------------------------------------------------
    def strand_turn(self) -> bool:
        """The start, or one message; True once the actor has ended and its inbox is answered."""
        self.turns += 1
        if not self._began:
            self._began = True
            try:
                self._actor_loop_setup()  # pykka catches Exception there, not BaseException
            except BaseException:
                self._fatal()
        elif not self.actor_stopped.is_set():
            self._handle(self.actor_inbox.get())
        if not self.actor_stopped.is_set():
            return False
        self._end_loop()
        return True

    def strand_pending(self) -> bool:
        inbox = self.actor_inbox
        assert isinstance(inbox, StrandInbox)
        return inbox.holds_any()

    def _handle(self, envelope: Envelope[Any]) -> None:
        """One pass of pykka's ``_actor_loop_running``."""
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                logger.info(f"Exception returned from {self} to caller:", exc_info=sys.exc_info())
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            self._fatal()

    def _fatal(self) -> None:
        """A BaseException in a turn: pykka's answer (this actor stops, then every actor), but
        never raised into the strand (its thread runs other actors' turns) and without waiting
        for the stops here (an actor lower on this thread's stack could never take its own)."""
        logger.debug(f"{sys.exc_info()[1]!r} in {self}. Stopping all actors.")
        self._stop()
        pykka.ActorRegistry.stop_all(block=False)

    def _end_loop(self) -> None:
        """pykka's ``_actor_loop_teardown``, after closing the inbox to new messages."""
        inbox = self.actor_inbox
        assert isinstance(inbox, StrandInbox)
        inbox.close()
        self._actor_loop_teardown()
        self.loop_ended.set()


def _answer_dead(envelope: Envelope[Any], actor: str) -> None:
    """Answer a message that came after the actor's end, as pykka's teardown would have."""
    if envelope.reply_to is None:
        return
    if isinstance(envelope.message, messages._ActorStop):
        envelope.reply_to.set(None)
        return
    error = pykka.ActorDeadError(f"{actor} stopped before handling the message")
    envelope.reply_to.set_exception(exc_info=(pykka.ActorDeadError, error, None))
