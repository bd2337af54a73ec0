"""``SupervisedActor``: a pykka actor that always tells its parent how it ended.

pykka reports a failure in a ``tell`` handler through ``on_failure`` but a failure in
``on_start`` through nothing at all, and an orderly stop through ``on_stop``. This base
class turns all three into one ``ChildExited`` message to the parent, and gives subclasses
two hooks, ``setup`` and ``teardown``, with one cleanup path whatever the ending.
"""

from __future__ import annotations

import contextlib
import traceback
from types import TracebackType
from typing import Any

import pykka
from loguru import logger

from executor.supervision import faults
from executor.supervision.spare_threads import SPARES
from executor.supervision.spec import ChildContext, ChildExited
from executor.supervision.strand import Strand
from executor.supervision.strandactor import StrandActor
from executor.supervision.threadnames import comm_of
from executor.supervision.timers import Timers

FAULTS: faults.FaultSwitch | None = faults.switch()
"""The test-only fault switch (``executor.supervision.faults``), read once at import: None in
production, where starting or running an actor pays nothing for it."""


def _own_strand(ctx: ChildContext) -> Strand:
    """A strand for this child alone, named for its place in the tree; on a spare thread when
    the context asks for one (``ChildContext.spare_thread``)."""
    return Strand(ctx.path, comm_of(ctx.path), spare=SPARES if ctx.spare_thread else None)


class SupervisedActor(StrandActor):
    """Base of every long-lived actor in the tree.

    It runs on the strand its context names (``ChildContext.strand``: a thread shared with the
    strand's other actors), or on a strand of its own, named for its place in the tree.
    Subclasses override ``setup`` (runs on the actor's strand before any message) and
    ``teardown`` (runs once, after a stop or a crash, also there). A failure in either is
    reported to the parent like any crash.
    """

    def __init__(self, ctx: ChildContext) -> None:
        super().__init__(ctx.strand if ctx.strand is not None else _own_strand(ctx))
        self.ctx = ctx
        self.timers = Timers()
        self.log = logger.bind(component=ctx.path)
        self._ended = False

    # -- hooks for subclasses --------------------------------------------------------------
    def setup(self) -> None:
        """Start work; runs on the actor's strand. Raise to fail the start."""

    def teardown(self) -> None:
        """Release resources; runs once whatever the ending."""

    def on_orphan_failure(self, error: str | None) -> None:
        """Called when an actor without a parent (the root) fails: nobody else will notice."""

    # -- helpers ---------------------------------------------------------------------------
    def tell_self_after(self, delay_s: float, message: Any) -> int:
        """Deliver ``message`` to this actor in ``delay_s`` seconds (cancelled at stop)."""
        return self.timers.tell_after(delay_s, self.actor_ref, message)

    def tell_self_on_tick(self, period_s: float, message: Any) -> int:
        """Deliver ``message`` to this actor on the next tick of period ``period_s``, together
        with every other actor's periodic message of that period (``Timers.tell_on_tick``)."""
        return self.timers.tell_on_tick(period_s, self.actor_ref, message)

    # -- pykka hooks -----------------------------------------------------------------------
    def on_start(self) -> None:
        self.ctx.lifeline.attach(self.loop_ended)
        if self.ctx.listed:
            # Listed before setup: a sibling answering a message sent from setup must find us,
            # even if our supervisor has not yet recorded the ref that start() returned.
            self.ctx.directory.put(self.ctx.name, self.actor_ref)
        try:
            if FAULTS is not None:
                faults.arm(FAULTS, self.ctx.path, self)
            self.setup()
        except Exception as exc:
            # pykka stops the actor without calling on_failure/on_stop: report it here.
            self.log.error("failed to start: {}", _short(exc))
            self._end(failed=True, error=_short(exc))
            raise

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        text = "".join(traceback.format_exception_only(exception_type, exception_value)).strip()
        self.log.error("crashed: {}", text)
        self._end(failed=True, error=text)

    def on_stop(self) -> None:
        self._end(failed=False, error=None)

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Where pykka marks the actor dead, before ``on_failure``: the supervisor arms its stop
        # timeout now, even for a subclass whose ``on_failure`` never reaches ``_end``.
        super()._handle_failure(exception_type, exception_value, tb)
        self.ctx.lifeline.dying()

    def strand_turn(self) -> bool:
        ended = super().strand_turn()
        if ended:  # the last turn: the loop has ended (``loop_ended`` is set)
            self.ctx.lifeline.loop_over()
        return ended

    def _end(self, failed: bool, error: str | None) -> None:
        if self._ended:
            return
        self._ended = True
        self.ctx.lifeline.dying()
        self.timers.cancel_all()
        try:
            self.teardown()
        except Exception as exc:
            self.log.error("teardown failed: {}", _short(exc))
            failed, error = True, error or _short(exc)
        self.ctx.directory.remove(self.ctx.name, self.actor_ref)
        parent = self.ctx.parent
        if parent is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                parent.tell(ChildExited(self.ctx.name, self.ctx.incarnation, failed, error))
        elif failed:
            self.on_orphan_failure(error)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
