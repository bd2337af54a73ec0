"""The supervisors' safety net is told, not polled: no timer at rest, one-shots after a death.

A child's lifeline tells its supervisor when the child's ending begins and when its loops have
ended; the supervisor arms a one-shot at the stop timeout only for a child that is dying. These
tests record every timer a supervisor arms (``TimerLog``) and order events, not timings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest

from executor.supervision import ChildSpec, start_root, supervisor_spec
from executor.supervision.spec import Lifeline
from executor.supervision.supervisor import Supervisor

from .probe import Crash, Escalations, Probe, SilentWorker, child_ref, policy, wait_for, worker_spec
from .test_parking import Parks


@dataclass(frozen=True)
class Armed:
    """One timer a supervisor armed: who, how (``after`` or ``tick``), in how long, what."""

    path: str
    how: str
    delay_s: float
    message: str


class TimerLog:
    """Records every timer a ``Supervisor`` arms (and still arms it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed: list[Armed] = []
        self.cond = threading.Condition()
        after, tick = Supervisor.tell_self_after, Supervisor.tell_self_on_tick

        def on_after(sup: Supervisor, delay_s: float, message: Any) -> int:
            self._add(Armed(sup.ctx.path, "after", delay_s, type(message).__name__))
            return after(sup, delay_s, message)

        def on_tick(sup: Supervisor, period_s: float, message: Any) -> int:
            self._add(Armed(sup.ctx.path, "tick", period_s, type(message).__name__))
            return tick(sup, period_s, message)

        monkeypatch.setattr(Supervisor, "tell_self_after", on_after)
        monkeypatch.setattr(Supervisor, "tell_self_on_tick", on_tick)

    def _add(self, armed: Armed) -> None:
        with self.cond:
            self.armed.append(armed)
            self.cond.notify_all()

    def wait(self, predicate: Any, what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.armed), 10), f"timed out waiting for {what}"

    def of(self, message: str, path: str | None = None) -> list[Armed]:
        with self.cond:
            return [a for a in self.armed if a.message == message and path in (None, a.path)]


def test_a_tree_at_rest_arms_no_timer(probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    log = TimerLog(monkeypatch)
    tree = [worker_spec("a", probe), supervisor_spec("sub", [worker_spec("inner", probe)], policy())]
    root = start_root("root", tree, policy())
    probe.wait_starts("a", 1)
    probe.wait_starts("inner", 1)
    sub = child_ref(root, "sub")
    assert sub is not None and child_ref(sub, "inner") is not None  # both have run their setup
    assert log.armed == []  # nothing periodic: neither supervisor will wake while all is well
    root.stop(timeout=10)


def test_a_child_that_died_without_notice_is_restarted_without_a_periodic_look(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lifeline's end tells the supervisor (``ChildVanished``): no look was ever scheduled."""
    log = TimerLog(monkeypatch)
    root = start_root("root", [worker_spec("s", probe, cls=SilentWorker)], policy())
    probe.wait_starts("s", 1)
    child_ref(root, "s").tell(Crash())  # type: ignore[union-attr]
    probe.wait_starts("s", 2)
    assert probe.index("s", 1, "teardown-end") < probe.index("s", 2, "start")
    assert [a.how for a in log.armed] == ["after", "after"]  # no tick, ever
    # The one-shot at its stop timeout (armed as it died), then the restart's backoff.
    assert [a.message for a in log.armed] == ["CheckChild", "RestartChild"]
    assert log.armed[0].delay_s == 5.0
    root.stop(timeout=10)


def _silent_held(probe: Probe, name: str, parks: bool) -> ChildSpec:
    """A child that dies without notice and whose teardown holds until the test lets it go."""
    probe.hold_teardown[name] = threading.Event()
    return ChildSpec(name, lambda ctx: SilentWorker.start(ctx, probe), stop_timeout_s=0.3, parks=parks)


def test_a_silent_child_whose_teardown_hangs_is_parked_at_its_stop_timeout(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, parks, escalated = TimerLog(monkeypatch), Parks(probe), Escalations()
    specs = [_silent_held(probe, "h", parks=True), ChildSpec("w", worker_spec("w", probe).start, parks=True)]
    root = start_root("root", specs, policy(park_s=0.2), escalated, on_park=parks)
    probe.wait_starts("h", 1)
    probe.wait_starts("w", 1)
    child_ref(root, "h").tell(Crash())  # type: ignore[union-attr]
    parks.wait(1)
    name, reason, _ = parks.calls[0]
    assert name == "h" and "is dead but its teardown has not ended after 0.3s" in reason
    assert ("h", 1, "teardown-end") not in probe.events and probe.starts["h"] == 1
    probe.hold_teardown["h"].set()  # its loop ends: started again after the park, not before
    probe.wait_starts("h", 2)
    assert probe.index("h", 1, "teardown-end") < probe.index("h", 2, "start")
    assert not escalated.event.is_set() and probe.starts["w"] == 1
    assert [a for a in log.armed if a.how == "tick"] == []
    root.stop(timeout=10)


def test_a_silent_child_whose_teardown_hangs_escalates_at_its_stop_timeout(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, escalated = TimerLog(monkeypatch), Escalations()
    root = start_root("root", [_silent_held(probe, "h", parks=False)], policy(), escalated)
    probe.wait_starts("h", 1)
    child_ref(root, "h").tell(Crash())  # type: ignore[union-attr]
    assert escalated.event.wait(10), "the root never gave up on its stuck child"
    assert "h is dead but its teardown has not ended after 0.3s" in (escalated.reason or "")
    assert [(a.how, a.message, a.delay_s) for a in log.armed] == [("after", "CheckChild", 0.3)]
    probe.hold_teardown["h"].set()
    wait_for(lambda: not root.is_alive(), what="root stopped")
    assert probe.starts["h"] == 1


def test_a_restart_waiting_for_old_loops_starts_when_they_end(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subtree gives up while one of its children will not finish stopping: the root's
    restart falls due, then waits, with a single one-shot at the subtree's stop timeout (no
    poll), and starts the subtree as soon as that child's loop ends."""
    log = TimerLog(monkeypatch)
    probe.hold_teardown["held"] = threading.Event()
    children = [worker_spec("held", probe, stop_timeout_s=0.1), worker_spec("crashing", probe)]
    root = start_root("root", [supervisor_spec("sub", children, policy(0), stop_timeout_s=60.0)], policy())
    probe.wait_starts("crashing", 1)
    sub = child_ref(root, "sub")
    child_ref(sub, "crashing").tell(Crash())  # type: ignore[arg-type,union-attr]
    log.wait(lambda armed: any(a.delay_s > 30 for a in armed if a.message == "RestartChild"),
             "the root's restart to wait for the held loop")
    assert probe.starts["held"] == 1
    probe.hold_teardown["held"].set()
    probe.wait_starts("held", 2)  # long before the 60 s one-shot
    # A new subtree numbers its children anew: order the events of every "held" by name.
    assert probe.sequence("held")[:4] == ["start", "teardown-begin", "teardown-end", "start"]
    restarts = log.of("RestartChild", "root")
    assert len(restarts) == 2 and restarts[0].delay_s < 1 < 30 < restarts[1].delay_s <= 60
    assert [a for a in log.armed if a.how == "tick"] == []
    root.stop(timeout=10)


def _lifeline() -> tuple[Lifeline, threading.Event]:
    line, end = Lifeline(), threading.Event()
    line.attach(end)
    return line, end


def test_a_lifeline_tells_its_watcher_once_when_every_linked_loop_has_ended() -> None:
    told: list[str] = []
    parent, parent_end = _lifeline()
    child, child_end = _lifeline()
    parent.link(child)
    parent.watch(lambda: told.append("dying"), lambda: told.append("ended"))
    parent.dying()
    parent.dying()  # a second notice of the same ending tells nothing more
    parent_end.set()
    parent.loop_over()
    assert told == ["dying"]  # the linked child's loop still runs
    child_end.set()
    child.loop_over()
    assert told == ["dying", "ended"] and parent.ended()
    parent.loop_over()
    assert told == ["dying", "ended"]
    parent.watch(lambda: told.append("late dying"), lambda: told.append("late ended"))
    assert told[-1] == "late ended"  # a watcher that comes after the end is told at once
