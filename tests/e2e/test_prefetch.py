"""A pool's ``prefetch``: a request taken while every slot is busy waits for the slot, then runs.

Its own executor (pool ``other``: one worker, prefetch 1) on the e2e control plane. The first
recipe blocks on a sink that never answers; the second is received meanwhile (its message in
flight, not on the queue), reads its input and waits for admission without starting a recipe;
once the first is cancelled it runs. Two recipes never run at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.executor import ExecutorHarness, running_executor, sink_recipe
from tests.fixtures.silent import SilentServer

from .direct import queue_depth
from .sampling import ProcessSampler

if TYPE_CHECKING:
    from executor.local.controlplane.server import ControlPlane

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def prefetching(
    e2e_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, bundled_venv_root: Path
) -> Iterator[ExecutorHarness]:
    state = tmp_path_factory.mktemp("prefetch-executor") / "state"
    pools = [{"id": "other", "max_workers": 1, "prefetch": 1}]
    with running_executor(e2e_control_plane, state, bundled_venv_root, pools=pools) as harness:
        harness.create_secret("E2E_SINK_TOKEN", e2e_control_plane.token)
        yield harness


def test_a_prefetched_request_waits_for_the_busy_slot_then_runs(prefetching: ExecutorHarness) -> None:
    cp = prefetching.cp
    with SilentServer() as nowhere, ProcessSampler() as sampler:
        blocking = sink_recipe(cp)
        blocking["sink"]["config"]["server"] = nowhere.url  # the CLI waits for an answer that never comes
        running_source, running = prefetching.submit(blocking, pool="other")
        sampler.wait_until(lambda _: nowhere.connections > 0)
        _, waiting = prefetching.submit(sink_recipe(cp), pool="other")
        key = waiting.rsplit(":", 1)[-1]
        prefetching.logs.wait_for(lambda text: "waiting for capacity" in text and key in text)
        assert queue_depth(cp, "other") == 2  # both held in flight by this executor
        assert prefetching.result(waiting) is None  # taken, not started: no RUNNING report yet
        assert sampler.ingest_runs_now == 1
        prefetching.cancel(running_source, running)
        assert prefetching.wait_terminal(running, timeout_s=90)["status"] == "CANCELLED"
        done = prefetching.wait_terminal(waiting, timeout_s=120)
    assert done["status"] == "SUCCESS", done["report"]
    assert sampler.ingest_runs_seen() == 2
    assert sampler.max_ingest_runs == 1  # the prefetched one started only once the slot was free
