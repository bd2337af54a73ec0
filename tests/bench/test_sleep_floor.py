"""The sleeping row's floor (``bench.sleep_floor``) does the protocol's duties while its runs last.

Its CPU is the least a runner of the protocol pays while recipes sleep, so it must not skip
what the executor must do: RUNNING at the start, the KILL read (a cancelled request's run is
stopped), every run through the sandbox to its result, each message deleted. Real parts: the
local control plane (moto on loopback) and the bench's stand-in CLI; the periods are shortened
so the test takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.anchor import ProtocolFloor
from bench.world import RESULT, World, wait_for
from tests.e2e.direct import queue_depth

CANCEL = """mutation($input: CancelIngestionExecutionRequestInput!) {
  cancelIngestionExecutionRequest(input: $input) }"""
DEADLINE_S = 60.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path, ("sleepfl",), direct=["sleepfl"])
    yield made
    made.close()


def test_its_runs_report_running_obey_a_kill_and_end_delivered(world: World, tmp_path: Path) -> None:
    standin = world.venv_root / "benchsim-bundled" / "bin" / "datahub"
    lease = world.cp.executor_configs(["sleepfl"])[0]
    floor = ProtocolFloor(world.cp.gms_url, world.cp.token, lease, standin, tmp_path / "floor",
                          command=("-m", "bench.sleep_floor"),
                          extra={"runs": 3, "signal_poll_s": 0.5, "progress_s": 1.0})
    try:
        short = world.source("sleepfl", {"mode": "sleep", "seconds": 3})
        long = world.source("sleepfl", {"mode": "sleep", "seconds": 600})
        urns = [world.submit(short)[0], world.submit(short)[0], world.submit(long)[0]]
        for urn in urns:
            wait_for(lambda u=urn: world.started(u), DEADLINE_S, f"{urn} to start")
        assert world.cp.get_aspect(urns[2], RESULT)["status"] == "RUNNING"
        world.graphql(CANCEL, {"input": {"ingestionSourceUrn": long, "executionRequestUrn": urns[2]}})
        killed = wait_for(lambda: _terminal(world, urns[2]), DEADLINE_S, "the cancelled run's result")
        assert killed["status"] == "FAILURE"
        for urn in urns[:2]:
            assert world.wait_result(urn, DEADLINE_S)["status"] == "SUCCESS"
        wait_for(lambda: _queue_empty(world), DEADLINE_S, "every message deleted")
        assert not list((tmp_path / "floor" / "work").iterdir()), "every work dir removed"
    finally:
        floor.close()


def _terminal(world: World, urn: str) -> dict[str, object] | None:
    value = world.cp.get_aspect(urn, RESULT)
    return value if value and value.get("status") not in (None, "RUNNING") else None


def _queue_empty(world: World) -> bool:
    return queue_depth(world.cp, "sleepfl") == 0
