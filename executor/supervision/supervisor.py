"""An OTP-style supervisor on pykka, with no knowledge of what it supervises.

It starts its children in order, restarts them by their restart type and strategy after an
exponential backoff with jitter, escalates (stops its children and fails itself) when more
than ``max_restarts`` happen within ``period_s``, and stops its children in reverse order,
each within its own timeout. A root supervisor (no parent) escalates by calling
``on_escalate``, which the main thread turns into a non-zero exit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from executor.backoff import RetryState
from executor.supervision.actor import SupervisedActor
from executor.supervision.directory import Directory
from executor.supervision.intensity import RestartIntensity
from executor.supervision.spec import (
    CheckChildren,
    ChildContext,
    ChildExited,
    ChildSpec,
    Restart,
    RestartChild,
    Strategy,
    SupervisorPolicy,
)


class EscalationError(RuntimeError):
    """Raised inside a supervisor to fail it when its restart intensity is exceeded."""


@dataclass(frozen=True)
class ChildStatus:
    """A snapshot of one child, for tests, ``/healthz`` and logs."""

    name: str
    alive: bool
    incarnation: int
    restarts: int


@dataclass(frozen=True)
class GetChildren:
    """Ask: the supervisor answers with a ``list[ChildStatus]``."""


class _Child:
    def __init__(self, spec: ChildSpec, retry: RetryState) -> None:
        self.spec = spec
        self.ref: pykka.ActorRef[Any] | None = None
        self.incarnation = 0
        self.generation = 0
        self.restarts = 0
        self.retry = retry


class Supervisor(SupervisedActor):
    """Supervises ``specs`` under ``policy``; itself supervisable like any child."""

    def __init__(
        self,
        ctx: ChildContext,
        specs: Sequence[ChildSpec],
        policy: SupervisorPolicy | None = None,
        on_escalate: Callable[[str | None], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(ctx)
        self.policy = policy or SupervisorPolicy()
        self.children_directory = Directory()
        self._children = [_Child(s, RetryState(self.policy.backoff)) for s in specs]
        self._intensity = RestartIntensity(self.policy.max_restarts, self.policy.period_s)
        self._on_escalate = on_escalate
        self._on_restart = on_restart
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------
    def setup(self) -> None:
        for child in self._children:
            self._start(child)
        self.tell_self_after(self.policy.liveness_interval_s, CheckChildren())

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
        elif isinstance(message, CheckChildren):
            self._check_children()
        elif isinstance(message, GetChildren):
            return [
                ChildStatus(c.spec.name, c.ref is not None and c.ref.is_alive(), c.incarnation, c.restarts)
                for c in self._children
            ]
        else:
            self.log.warning("ignoring unknown message {}", type(message).__name__)
        return None

    def _child_exited(self, msg: ChildExited) -> None:
        child = self._find(msg.name)
        if child is None or child.ref is None or msg.incarnation != child.incarnation or self._stopping:
            return  # a stale notice, or a child we stopped on purpose
        self._handle_end(child, msg.failed, msg.error)

    def _check_children(self) -> None:
        """The safety net: a child whose thread is gone without a notice counts as failed."""
        for child in self._children:
            if child.ref is not None and not child.ref.is_alive():
                self._handle_end(child, True, "died without notice")
        self.tell_self_after(self.policy.liveness_interval_s, CheckChildren())

    def _handle_end(self, child: _Child, failed: bool, error: str | None) -> None:
        ref, child.ref = child.ref, None
        if ref is not None:
            self.children_directory.remove(child.spec.name, ref)
        kind = child.spec.restart
        if kind is Restart.TEMPORARY or (kind is Restart.TRANSIENT and not failed):
            self.log.info("{} ended ({}); not restarted", child.spec.name, error or "normal")
            return
        now = time.monotonic()
        if not self._intensity.record(now):
            raise EscalationError(
                f"{child.spec.name} ended: {error or 'normal'}; more than "
                f"{self.policy.max_restarts} restarts in {self.policy.period_s:g}s, giving up"
            )
        if self.policy.strategy is Strategy.REST_FOR_ONE:
            for later in reversed(self._children[self._children.index(child) + 1 :]):
                self._stop_child(later)
        delay = child.retry.failed(now)
        child.generation += 1
        self.log.warning("{} ended ({}); restarting in {:.2f}s", child.spec.name, error or "normal", delay)
        self.tell_self_after(delay, RestartChild(child.spec.name, child.generation))

    def _restart_due(self, msg: RestartChild) -> None:
        child = self._find(msg.name)
        if child is None or msg.generation != child.generation or self._stopping:
            return
        group = [child]
        if self.policy.strategy is Strategy.REST_FOR_ONE:
            group = self._children[self._children.index(child) :]
        for member in group:
            if member.ref is None:
                member.restarts += 1
                self._start(member)
                if self._on_restart is not None:
                    self._on_restart(f"{self.ctx.path}/{member.spec.name}")

    # -- helpers ---------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        child.incarnation += 1
        ctx = ChildContext(
            name=child.spec.name,
            path=f"{self.ctx.path}/{child.spec.name}",
            incarnation=child.incarnation,
            parent=self.actor_ref,
            directory=self.children_directory,
        )
        ref = child.spec.start(ctx)
        child.ref = ref
        self.children_directory.put(child.spec.name, ref)

    def _stop_child(self, child: _Child) -> None:
        ref, child.ref = child.ref, None
        if ref is None:
            return
        self.children_directory.remove(child.spec.name, ref)
        try:
            ref.stop(block=True, timeout=child.spec.stop_timeout_s)
        except pykka.Timeout:
            self.log.error("{} did not stop within {:g}s", child.spec.name, child.spec.stop_timeout_s)
        except pykka.ActorDeadError:
            pass

    def _find(self, name: str) -> _Child | None:
        return next((c for c in self._children if c.spec.name == name), None)


def start_root(
    name: str,
    specs: Sequence[ChildSpec],
    policy: SupervisorPolicy | None = None,
    on_escalate: Callable[[str | None], None] | None = None,
    on_restart: Callable[[str], None] | None = None,
) -> pykka.ActorRef[Supervisor]:
    """Start a root supervisor (no parent); ``on_escalate`` is called if it gives up."""
    ctx = ChildContext(name=name, path=name, incarnation=1, parent=None, directory=Directory())
    return Supervisor.start(ctx, specs, policy, on_escalate, on_restart)


def supervisor_spec(
    name: str,
    specs: Sequence[ChildSpec],
    policy: SupervisorPolicy | None = None,
    on_restart: Callable[[str], None] | None = None,
    stop_timeout_s: float = 30.0,
) -> ChildSpec:
    """A child spec for a nested supervisor (a subtree)."""
    return ChildSpec(
        name=name,
        start=lambda ctx: Supervisor.start(ctx, specs, policy, None, on_restart),
        restart=Restart.PERMANENT,
        stop_timeout_s=stop_timeout_s,
    )
