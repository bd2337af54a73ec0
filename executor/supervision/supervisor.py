"""An OTP-style one_for_one supervisor on pykka, with no knowledge of what it supervises.

It starts its children in order, restarts one that ended after an exponential backoff with
jitter, escalates (stops its children and fails itself) when more than ``max_restarts`` happen
within ``period_s``, and stops its children in reverse order, each within its own timeout. A
root supervisor (no parent) escalates by calling ``on_escalate``, which the main thread turns
into a non-zero exit.

A new incarnation starts only after the old one has fully stopped, as OTP waits for the EXIT:
after the old one's ``ChildExited`` (sent at the end of its teardown) or, for one that died
without a word, once it is dead, and in both cases once its loops (a subtree's: all of them)
have ended. A child that stays half-dead longer than its ``stop_timeout_s`` is parked if it may
be, else the supervisor escalates: never two instances side by side.

Nothing here looks at the children periodically: each child's lifeline tells its supervisor when
the child's ending begins (``ChildEnding``, which arms a one-shot ``CheckChild`` at the stop
timeout) and when its loops have ended (``ChildVanished``: a death without notice, or the end a
due restart waits for). At rest a supervisor has no timer and its thread never wakes (idle CPU).

A child whose spec ``parks`` has a restart intensity of its own: when it keeps failing it is
parked (left stopped, started again after the long ``park_backoff``) while its siblings run on;
only when every such child is parked at once does the supervisor escalate.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from executor.backoff import RetryState
from executor.supervision.actor import SupervisedActor
from executor.supervision.directory import Directory
from executor.supervision.intensity import RestartIntensity
from executor.supervision.spec import (
    CheckChild,
    ChildContext,
    ChildEnding,
    ChildExited,
    ChildSpec,
    ChildVanished,
    Lifeline,
    RestartChild,
    SupervisorPolicy,
)
from executor.supervision.strand import Strand

ParkHook = Callable[[str, str, float], None]
"""Called with (child name, why, seconds until its next start) when a child is parked."""


class EscalationError(RuntimeError):
    """Raised inside a supervisor to fail it: intensity exceeded, or a child would not stop."""


class _Child:
    def __init__(self, spec: ChildSpec, policy: SupervisorPolicy) -> None:
        self.spec = spec
        self.ref: pykka.ActorRef[Any] | None = None
        self.lifeline: Lifeline | None = None
        """The loop of the current incarnation, or of the last one until it has ended."""
        self.incarnation = 0
        self.generation = 0
        self.retry = RetryState(policy.backoff)
        self.intensity = RestartIntensity(policy.max_restarts, policy.period_s) if spec.parks else None
        self.park_retry = RetryState(policy.park_backoff)
        self.parked = False
        self.waiting_since: float | None = None
        """Since when the supervisor has waited for a dead incarnation's loop to end."""
        self.pending: RestartChild | None = None
        """A restart that fell due while the old incarnation's loops still ran."""
        self.timer: int | None = None
        """The one-shot that ends that wait (``CheckChild``, or the pending restart again)."""


class Supervisor(SupervisedActor):
    """Supervises ``specs`` under ``policy``; itself supervisable like any child."""

    def __init__(
        self,
        ctx: ChildContext,
        specs: Sequence[ChildSpec],
        policy: SupervisorPolicy | None = None,
        on_escalate: Callable[[str | None], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        on_park: ParkHook | None = None,
    ) -> None:
        super().__init__(ctx)
        self.policy = policy or SupervisorPolicy()
        self.children_directory = Directory()
        self._children = [_Child(s, self.policy) for s in specs]
        self._intensity = RestartIntensity(self.policy.max_restarts, self.policy.period_s)
        self._on_escalate = on_escalate
        self._on_restart = on_restart
        self._on_park = on_park
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------
    def setup(self) -> None:
        for child in self._children:
            self._start(child)

    def teardown(self) -> None:
        self._stopping = True
        for child in reversed(self._children):
            self._stop_child(child)

    def on_orphan_failure(self, error: str | None) -> None:
        if self._on_escalate is not None:
            self._on_escalate(error)

    # -- messages --------------------------------------------------------------------------
    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self._child_exited(message)
        elif isinstance(message, RestartChild):
            self._restart_due(message)
        elif isinstance(message, ChildVanished):
            self._loops_ended(message)
        elif isinstance(message, ChildEnding):
            self._child_ending(message)
        elif isinstance(message, CheckChild):
            self._check_child(message)
        else:
            self.log.warning("ignoring unknown message {}", type(message).__name__)
        return None

    def _child_exited(self, msg: ChildExited) -> None:
        child = self._current(msg.name, msg.incarnation)
        if child is None:
            return  # a stale notice, or a child we stopped on purpose
        self._handle_end(child, msg.failed, msg.error)

    def _loops_ended(self, msg: ChildVanished) -> None:
        """Every loop of an incarnation has ended: without a ``ChildExited`` before, it died
        without notice; after one, a restart may be waiting for exactly this."""
        child = self._current(msg.name, msg.incarnation)
        if child is not None:
            self._handle_end(child, True, "died without notice")
            return
        child = self._find(msg.name)
        if child is not None and child.incarnation == msg.incarnation and child.pending is not None:
            self._restart_due(child.pending)

    def _child_ending(self, msg: ChildEnding) -> None:
        """The incarnation is dying: give its teardown its stop timeout, once (``CheckChild``)."""
        child = self._current(msg.name, msg.incarnation)
        if child is None or child.timer is not None:
            return
        child.waiting_since = time.monotonic()
        child.timer = self.tell_self_after(child.spec.stop_timeout_s, CheckChild(msg.name, msg.incarnation))

    def _check_child(self, msg: CheckChild) -> None:
        """A stop timeout after the ending began, neither a notice nor the end of the loops came:
        the teardown hangs. A ``ChildVanished`` already in the mailbox is the loops' end."""
        child = self._current(msg.name, msg.incarnation)
        if child is None:
            return
        child.timer = None
        if child.lifeline is None or not child.lifeline.ended():
            self._give_up_waiting(child, time.monotonic(), "is dead but its teardown has not ended")

    def _handle_end(self, child: _Child, failed: bool, error: str | None) -> None:
        self._forget(child)
        reason = error or "normal"
        now = time.monotonic()
        intensity = child.intensity or self._intensity
        if not intensity.record(now):
            if child.intensity is not None:
                why = f"keeps failing ({reason}): more than {self.policy.max_restarts} restarts in "
                self._park(child, f"{why}{self.policy.period_s:g}s", now)
                return
            raise EscalationError(
                f"{child.spec.name} ended: {reason}; more than "
                f"{self.policy.max_restarts} restarts in {self.policy.period_s:g}s, giving up"
            )
        delay = child.retry.failed(now)
        child.generation += 1
        self.log.warning("{} ended ({}); restarting in {:.2f}s", child.spec.name, reason, delay)
        self.tell_self_after(delay, RestartChild(child.spec.name, child.generation))

    def _park(self, child: _Child, why: str, now: float) -> None:
        """Leave ``child`` stopped for a long backoff; escalate if nothing else is left running."""
        child.parked = True
        child.intensity = RestartIntensity(self.policy.max_restarts, self.policy.period_s)
        child.retry.succeeded()
        delay = child.park_retry.failed(now)
        child.generation += 1
        self.log.error("{} parked: {}; next start in {:.0f}s", child.spec.name, why, delay)
        if self._on_park is not None:
            self._on_park(child.spec.name, why, delay)
        if all(c.parked for c in self._children if c.spec.parks):
            raise EscalationError(
                f"{child.spec.name} parked ({why}), and so is every other child that may be "
                "parked: nothing useful is left running"
            )
        self.tell_self_after(delay, RestartChild(child.spec.name, child.generation))

    def _restart_due(self, msg: RestartChild) -> None:
        child = self._find(msg.name)
        if child is None or msg.generation != child.generation or self._stopping or child.ref is not None:
            return
        if child.lifeline is not None and not child.lifeline.ended():
            self._wait_for_loops(child, msg)
            return
        self._cancel_timer(child)
        if child.parked:
            child.parked = False
            self.log.info("{} was parked; starting it again", child.spec.name)
        self._start(child)
        if self._on_restart is not None:
            self._on_restart(f"{self.ctx.path}/{child.spec.name}")

    # -- helpers ---------------------------------------------------------------------------
    def _wait_for_loops(self, child: _Child, msg: RestartChild) -> None:
        """A restart fell due before the old loops ended: their end (``ChildVanished``) brings it
        back, or a one-shot at the stop timeout gives up on them."""
        now = time.monotonic()
        if child.waiting_since is None:
            child.waiting_since = now
        left = child.waiting_since + child.spec.stop_timeout_s - now
        if left <= 0:
            self._give_up_waiting(child, now, "has not finished stopping")
            return
        self._cancel_timer(child)
        child.pending = msg
        child.timer = self.tell_self_after(left, msg)

    def _cancel_timer(self, child: _Child) -> None:
        """The wait for the old incarnation is over: drop its one-shot and pending restart."""
        child.pending = None
        if child.timer is not None:
            self.timers.cancel(child.timer)
            child.timer = None

    def _give_up_waiting(self, child: _Child, now: float, what: str) -> None:
        """Never two instances side by side: park the child if it may be parked, else escalate."""
        why = f"{what} after {child.spec.stop_timeout_s:g}s; not starting a second instance beside it"
        if not child.spec.parks:
            raise EscalationError(f"{child.spec.name} {why}")
        self._forget(child)
        child.waiting_since = None  # wait again, as long, when the park is over
        self._park(child, why, now)

    def _forget(self, child: _Child) -> None:
        """The child's current incarnation is over: no ref, out of the directory, no one-shot."""
        self._cancel_timer(child)
        ref, child.ref = child.ref, None
        if ref is not None:
            self.children_directory.remove(child.spec.name, ref)

    def _start(self, child: _Child) -> None:
        child.incarnation += 1
        child.waiting_since = None
        child.lifeline = Lifeline()
        name, incarnation, me = child.spec.name, child.incarnation, self.actor_ref
        child.lifeline.watch(
            lambda: _tell(me, ChildEnding(name, incarnation)),
            lambda: _tell(me, ChildVanished(name, incarnation)),
        )
        self.ctx.lifeline.link(child.lifeline)
        ctx = ChildContext(
            name=child.spec.name,
            path=f"{self.ctx.path}/{child.spec.name}",
            incarnation=child.incarnation,
            parent=self.actor_ref,
            directory=self.children_directory,
            lifeline=child.lifeline,
            subtree=self.ctx.lifeline,
            strand=child.spec.strand,
        )
        ref = child.spec.start(ctx)
        child.ref = ref
        self.children_directory.put(child.spec.name, ref)

    def _stop_child(self, child: _Child) -> None:
        """Stop ``child`` for good and wait, within its timeout, for its loops (a subtree's) to
        end; then stop what its incarnations shared (``stop_shared``): once the child has
        stopped, none of its incarnations can start more of it."""
        timeout = child.spec.stop_timeout_s
        deadline = time.monotonic() + timeout
        ref, child.ref = child.ref, None
        if ref is not None:
            self.children_directory.remove(child.spec.name, ref)
            # Too slow, or it had failed and may still be tearing down: its lifeline tells (below).
            with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                ref.stop(block=True, timeout=timeout)
        if child.lifeline is not None and not child.lifeline.join(deadline - time.monotonic()):
            self.log.error("{} did not stop within {:g}s", child.spec.name, timeout)
        if child.spec.stop_shared is not None:
            try:
                child.spec.stop_shared()
            except Exception as exc:
                self.log.error("stopping what {} shared failed: {}", child.spec.name, exc)

    def _current(self, name: str, incarnation: int) -> _Child | None:
        """The child ``name`` if ``incarnation`` is its running one and we are not stopping."""
        child = self._find(name)
        if child is None or child.ref is None or incarnation != child.incarnation or self._stopping:
            return None
        return child

    def _find(self, name: str) -> _Child | None:
        return next((c for c in self._children if c.spec.name == name), None)


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    """A lifeline's news, from a child's thread; dropped once the supervisor has ended. The
    lifeline holds the ref (which holds its actor weakly), never the supervisor itself."""
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


def start_root(
    name: str,
    specs: Sequence[ChildSpec],
    policy: SupervisorPolicy | None = None,
    on_escalate: Callable[[str | None], None] | None = None,
    on_restart: Callable[[str], None] | None = None,
    on_park: ParkHook | None = None,
    strand: Strand | None = None,
) -> pykka.ActorRef[Supervisor]:
    """Start a root supervisor (no parent) on ``strand`` (None: a thread of its own);
    ``on_escalate`` is called if it gives up."""
    ctx = ChildContext(name=name, path=name, incarnation=1, parent=None, directory=Directory(), strand=strand)
    return Supervisor.start(ctx, specs, policy, on_escalate, on_restart, on_park)


def supervisor_spec(
    name: str,
    specs: Sequence[ChildSpec],
    policy: SupervisorPolicy | None = None,
    on_restart: Callable[[str], None] | None = None,
    stop_timeout_s: float = 30.0,
    parks: bool = False,
    strand: Strand | None = None,
) -> ChildSpec:
    """A child spec for a nested supervisor (a subtree), on ``strand`` if given."""
    return ChildSpec(
        name=name,
        start=lambda ctx: Supervisor.start(ctx, specs, policy, None, on_restart),
        stop_timeout_s=stop_timeout_s,
        parks=parks,
        strand=strand,
    )
