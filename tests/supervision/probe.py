"""A small supervised actor whose behaviour each test scripts, and a probe that records it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pykka

from executor.backoff import Backoff
from executor.supervision import ChildContext, ChildSpec, SupervisedActor, SupervisorPolicy
from executor.supervision.strand import Strand


@dataclass
class Probe:
    """What happened to the actors, in order, and what each is scripted to do.

    ``events`` holds ``(name, incarnation, what)`` with ``what`` one of ``start``,
    ``teardown-begin``, ``teardown-end``, ``got:<message class>``.
    """

    starts: dict[str, int] = field(default_factory=dict)
    stops: list[str] = field(default_factory=list)
    events: list[tuple[str, int, str]] = field(default_factory=list)
    fail_starts: dict[str, int] = field(default_factory=dict)
    slow_teardown_s: dict[str, float] = field(default_factory=dict)
    """Seconds the teardown of ``name`` takes (the scenario under test, not a wait of the test)."""
    hold_teardown: dict[str, threading.Event] = field(default_factory=dict)
    """The teardown of ``name`` waits for this event (set it to let the thread end)."""
    cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, name: str, incarnation: int, what: str) -> None:
        with self.cond:
            self.events.append((name, incarnation, what))
            self.cond.notify_all()

    def index(self, name: str, incarnation: int, what: str) -> int:
        """Position of an event in ``events`` (fails if it did not happen)."""
        with self.cond:
            return self.events.index((name, incarnation, what))

    def sequence(self, name: str) -> list[str]:
        """What happened to every incarnation of ``name``, in order."""
        with self.cond:
            return [what for who, _, what in self.events if who == name]

    def wait_starts(self, name: str, count: int, timeout: float = 10.0) -> None:
        self.wait_event(lambda: self.starts.get(name, 0) >= count,
                        f"{name} to start {count} times (started {self.starts.get(name, 0)})", timeout)

    def wait_event(self, predicate: Any, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}"
                self.cond.wait(left)


@dataclass(frozen=True)
class Crash:
    """Tell: raise inside the handler."""


@dataclass(frozen=True)
class Quit:
    """Tell: stop normally."""


@dataclass(frozen=True)
class Inspect:
    """Ask: whether this instance carries its own ``on_receive`` (a fault wrapper)."""


class Worker(SupervisedActor):
    def __init__(self, ctx: ChildContext, probe: Probe) -> None:
        super().__init__(ctx)
        self.probe = probe

    def setup(self) -> None:
        with self.probe.cond:  # one step: whoever sees the count also sees the event
            self.probe.starts[self.ctx.name] = self.probe.starts.get(self.ctx.name, 0) + 1
            failing = self.probe.fail_starts.get(self.ctx.name, 0)
            if failing:
                self.probe.fail_starts[self.ctx.name] = failing - 1
            self.probe.record(self.ctx.name, self.ctx.incarnation, "start")
        if failing:
            raise RuntimeError("scripted start failure")

    def teardown(self) -> None:
        name, incarnation = self.ctx.name, self.ctx.incarnation
        self.probe.record(name, incarnation, "teardown-begin")
        if name in self.probe.slow_teardown_s:
            threading.Event().wait(self.probe.slow_teardown_s[name])
        if name in self.probe.hold_teardown:
            self.probe.hold_teardown[name].wait(30)
        with self.probe.cond:
            self.probe.stops.append(name)
        self.probe.record(name, incarnation, "teardown-end")

    def on_receive(self, message: Any) -> Any:
        self.probe.record(self.ctx.name, self.ctx.incarnation, f"got:{type(message).__name__}")
        if isinstance(message, Crash):
            raise RuntimeError("scripted crash")
        if isinstance(message, Quit):
            self.actor_ref.stop(block=False)
        if isinstance(message, Inspect):
            return "on_receive" in vars(self)
        return None


class SilentWorker(Worker):
    """Dies without telling its parent (its teardown still runs): only the safety net notices."""

    def on_failure(self, *args: Any) -> None:
        self.teardown()


def worker_spec(name: str, probe: Probe, cls: type = Worker, stop_timeout_s: float = 5.0,
                strand: Strand | None = None) -> ChildSpec:
    return ChildSpec(name=name, start=lambda ctx: cls.start(ctx, probe), stop_timeout_s=stop_timeout_s,
                     strand=strand)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true or fail after ``timeout``: for state with no event to wait on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def child_ref(sup: pykka.ActorRef[Any], name: str) -> pykka.ActorRef[Any] | None:
    return sup.proxy().children_directory.get().get(name)  # type: ignore[no-any-return]


FAST = Backoff(min_s=0.01, max_s=0.05, jitter=0.1, reset_after_s=60)


def policy(max_restarts: int = 5, park_s: float = 60.0) -> SupervisorPolicy:
    """Quick restarts; parked children wait ``park_s``."""
    return SupervisorPolicy(max_restarts=max_restarts, period_s=60, backoff=FAST,
                            park_backoff=Backoff(min_s=park_s, max_s=park_s, jitter=0.0))


class Escalations:
    """An ``on_escalate`` hook that remembers the reason."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None

    def __call__(self, reason: str | None) -> None:
        self.reason = reason
        self.event.set()
