"""A small supervised actor whose behaviour each test scripts, and a probe that records it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pykka

from executor.supervision import ChildContext, ChildSpec, Restart, SupervisedActor


@dataclass
class Probe:
    """What happened to the actors: starts and stops by name, and scripted start failures."""

    starts: dict[str, int] = field(default_factory=dict)
    stops: list[str] = field(default_factory=list)
    fail_starts: dict[str, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_starts(self, name: str, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.starts.get(name, 0) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{name} started {self.starts.get(name, 0)} times, wanted {count}"
                self.cond.wait(left)


@dataclass(frozen=True)
class Crash:
    """Tell: raise inside the handler."""


@dataclass(frozen=True)
class Quit:
    """Tell: stop normally."""


class Worker(SupervisedActor):
    def __init__(self, ctx: ChildContext, probe: Probe) -> None:
        super().__init__(ctx)
        self.probe = probe

    def setup(self) -> None:
        with self.probe.cond:
            self.probe.starts[self.ctx.name] = self.probe.starts.get(self.ctx.name, 0) + 1
            failing = self.probe.fail_starts.get(self.ctx.name, 0)
            if failing:
                self.probe.fail_starts[self.ctx.name] = failing - 1
            self.probe.cond.notify_all()
        if failing:
            raise RuntimeError("scripted start failure")

    def teardown(self) -> None:
        with self.probe.cond:
            self.probe.stops.append(self.ctx.name)
            self.probe.cond.notify_all()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Crash):
            raise RuntimeError("scripted crash")
        if isinstance(message, Quit):
            self.actor_ref.stop(block=False)
        return None


class SilentWorker(Worker):
    """Dies without telling its parent: only the liveness check can notice."""

    def on_failure(self, *args: Any) -> None:
        pass


def worker_spec(
    name: str, probe: Probe, restart: Restart = Restart.PERMANENT, cls: type = Worker
) -> ChildSpec:
    return ChildSpec(name=name, start=lambda ctx: cls.start(ctx, probe), restart=restart)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true or fail after ``timeout``: for state with no event to wait on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def child_ref(sup: pykka.ActorRef[Any], name: str) -> pykka.ActorRef[Any] | None:
    return sup.proxy().children_directory.get().get(name)  # type: ignore[no-any-return]
