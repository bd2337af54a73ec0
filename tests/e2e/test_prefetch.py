"""A pool's ``prefetch``: a request taken while every slot is busy waits for the slot, then runs.

Each test has its own executor (pool ``other``: one worker, prefetch 1) on the e2e control
plane. The first recipe blocks on a sink that never answers; the second is received meanwhile
(its message in flight, not on the queue), reads its input and waits for admission without
starting a recipe; once the first is cancelled it runs. Two recipes never run at once. A drain
gives the waiting one back to the queue at once, never started.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.controlplane import graphql
from tests.fixtures.executor import CREATE_SECRET, ExecutorHarness, running_executor, sink_recipe
from tests.fixtures.executor import _check_nothing_left as check_nothing_left
from tests.fixtures.silent import SilentServer

from .direct import queue_depth
from .sampling import ProcessSampler

if TYPE_CHECKING:
    from executor.local.controlplane.server import ControlPlane

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def sink_secret(e2e_control_plane: ControlPlane) -> None:
    """The secret ``sink_recipe`` names, once for the module's control plane."""
    variables = {"input": {"name": "E2E_SINK_TOKEN", "value": e2e_control_plane.token}}
    graphql(e2e_control_plane, CREATE_SECRET, variables)


@pytest.fixture
def prefetching(
    e2e_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, bundled_venv_root: Path,
    sink_secret: None,
) -> Iterator[ExecutorHarness]:
    state = tmp_path_factory.mktemp("prefetch-executor") / "state"
    pools = [{"id": "other", "max_workers": 1, "prefetch": 1}]
    with running_executor(e2e_control_plane, state, bundled_venv_root, pools=pools) as harness:
        yield harness


def _visible(cp: ControlPlane, pool: str) -> int:
    """Messages on the pool's queue that a receive would return now (read on moto)."""
    import boto3

    from executor.local.controlplane.aws import REGION

    client = boto3.session.Session().client(
        "sqs", endpoint_url=cp.sqs_endpoint, region_name=REGION,
        aws_access_key_id="inspect", aws_secret_access_key="inspect",  # moto accepts any key
    )
    try:
        attrs = client.get_queue_attributes(
            QueueUrl=cp.queue_url(pool), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])
    finally:
        client.close()


def _block_then_prefetch(harness: ExecutorHarness, nowhere: SilentServer,
                         sampler: ProcessSampler) -> tuple[str, str, str]:
    """A recipe that blocks, then a second request: (blocking source, blocking, waiting URN)."""
    blocking = sink_recipe(harness.cp)
    blocking["sink"]["config"]["server"] = nowhere.url  # the CLI waits for an answer that never comes
    running_source, running = harness.submit(blocking, pool="other")
    sampler.wait_until(lambda _: nowhere.connections > 0)
    _, waiting = harness.submit(sink_recipe(harness.cp), pool="other")
    key = waiting.rsplit(":", 1)[-1]
    harness.logs.wait_for(lambda text: "waiting for capacity" in text and key in text)
    return running_source, running, waiting


def test_a_prefetched_request_waits_for_the_busy_slot_then_runs(prefetching: ExecutorHarness) -> None:
    cp = prefetching.cp
    with SilentServer() as nowhere, ProcessSampler(prefetching.logs.text) as sampler:
        running_source, running, waiting = _block_then_prefetch(prefetching, nowhere, sampler)
        assert queue_depth(cp, "other") == 2  # both held in flight by this executor
        assert prefetching.result(waiting) is None  # taken, not started: no RUNNING report yet
        assert sampler.ingest_runs_now == 1
        prefetching.cancel(running_source, running)
        assert prefetching.wait_terminal(running, timeout_s=90)["status"] == "CANCELLED"
        done = prefetching.wait_terminal(waiting, timeout_s=120)
    assert done["status"] == "SUCCESS", done["report"]
    assert sampler.ingest_runs_seen() == 2
    assert sampler.max_ingest_runs == 1  # the prefetched one started only once the slot was free


def test_a_drain_gives_a_prefetched_request_back_unstarted(prefetching: ExecutorHarness) -> None:
    cp = prefetching.cp
    with SilentServer() as nowhere, ProcessSampler(prefetching.logs.text) as sampler:
        running_source, running, waiting = _block_then_prefetch(prefetching, nowhere, sampler)
        prefetching.stopped = True  # shut down here, on a thread; checked for leftovers below
        stopping = threading.Thread(target=prefetching.service.shutdown, name="test-drain", daemon=True)
        stopping.start()  # drains: the running recipe may finish, the waiting request goes back
        sampler.wait_until(lambda _: _visible(cp, "other") == 1)  # back on the queue, not at the deadline
        assert sampler.ingest_runs_now == 1
        prefetching.cancel(running_source, running)  # ends the drain before its deadline
        stopping.join(120)
        assert not stopping.is_alive()
    ended = prefetching.result(running)
    # Cancelled, not interrupted: the drain's deadline never came, so the waiting request went
    # back at the drain's start, not with the interruption at its end.
    assert ended is not None and ended["status"] == "CANCELLED", ended
    assert prefetching.result(waiting) is None  # never started, nothing reported: another executor runs it
    assert sampler.ingest_runs_seen() == 1
    assert _visible(cp, "other") == 1
    _purge(cp, "other")
    check_nothing_left(prefetching.threads_before)


def _purge(cp: ControlPlane, pool: str) -> None:
    """Leave the module's control plane with an empty queue for the next tests."""
    import boto3

    from executor.local.controlplane.aws import REGION

    client = boto3.session.Session().client(
        "sqs", endpoint_url=cp.sqs_endpoint, region_name=REGION,
        aws_access_key_id="inspect", aws_secret_access_key="inspect",
    )
    try:
        client.purge_queue(QueueUrl=cp.queue_url(pool))
    finally:
        client.close()
