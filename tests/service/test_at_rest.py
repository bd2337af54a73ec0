"""At rest, nothing beats: liveness is read when asked, so a leased pool with no task delivers no
message to its leaser, resolver, runner or the Observer (the reporter: its presence report, every
30 s, at most), however many long polls its poller makes meanwhile; ``/healthz`` still lists
every part, live, the timer thread among them. A real executor on the local control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pykka

from executor.local.controlplane.server import ControlPlane
from executor.pool.messages import LEASER, POLLER, REPORTER, RESOLVER, RUNNER
from executor.supervision.strandactor import StrandActor
from tests.fixtures.executor import running_executor
from tests.supervision.probe import wait_for

POLLS = 12
"""The window: this many turns of the poller, each a 1 s long poll at rest (a few are its own
timers'): longer than one period of the 5 s beats this proves gone, whatever their phase."""


def _actor(ref: pykka.ActorRef[Any] | None) -> StrandActor:
    assert ref is not None
    actor = ref._actor_weakref()
    assert isinstance(actor, StrandActor)
    return actor


def test_a_pool_at_rest_delivers_its_quiet_actors_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    pools = [{"id": "default", "poll_wait_s": 1}]
    with running_executor(control_plane, tmp_path / "state", tmp_path / "venvs", pools) as harness:
        service = harness.service
        assert service.root is not None and service.health is not None
        health = service.health
        wait_for(lambda: health.readiness()[0], timeout=30, what="the pool to be leased and polling")
        top = service.root.proxy().children_directory.get(timeout=5)
        children = top.get("pool:default").proxy().children_directory.get(timeout=5)
        actors = {name: _actor(children.get(name)) for name in (LEASER, RESOLVER, RUNNER, REPORTER)}
        actors["observability"] = _actor(top.get("observability"))
        poller = _actor(children.get(POLLER))
        settled = poller.turns + 2
        wait_for(lambda: poller.turns >= settled, timeout=30, what="the start's messages to be handled")
        before = {name: actor.turns for name, actor in actors.items()}
        end = poller.turns + POLLS
        wait_for(lambda: poller.turns >= end, timeout=60, what=f"{POLLS} turns of the poller")
        turns = {name: actor.turns - before[name] for name, actor in actors.items()}
        assert turns.pop(REPORTER) <= 1, "the reporter's presence report, at most"
        assert turns == dict.fromkeys(turns, 0), turns
        live, details = health.liveness()
        assert live, details
        expected = {f"root/pool:default/{name}" for name in (LEASER, RESOLVER, REPORTER, RUNNER, POLLER)}
        assert set(details["components"]) == expected | {"root/observability", "timers"}
