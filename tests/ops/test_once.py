"""``run --once`` as a real process against the control plane: one task, its status as exit code.

Two requests are queued before the executor starts. ``--once`` takes exactly one, runs it
with the real datahub CLI, reports it, and exits 0 for SUCCESS or 1 for FAILURE; the other
message stays in the queue, visible and never received, with no result written for it. A
second ``--once`` then takes that one.

The helpers at the top are shared with the other end-to-end ops tests (proxy, observability).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
import yaml

from executor.local.controlplane.aws import REGION
from tests.fixtures.controlplane import graphql
from tests.service.processes import ROOT, ExecutorProcess

DEMO_METADATA = ROOT / "executor" / "local" / "demo" / "shop_metadata.json"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELLED", "TIMEOUT", "ABORTED", "DUPLICATE"}
CREATE_SOURCE = "mutation($i: UpdateIngestionSourceInput!) { createIngestionSource(input: $i) }"
RUN_SOURCE = "mutation($u: String!) { createIngestionExecutionRequest(input: {ingestionSourceUrn: $u}) }"


# -- helpers shared with test_proxy.py and test_service_observability.py -----------------------
@functools.lru_cache(maxsize=1)
def bundled_venv_root() -> Path:
    """``.cache/venvs`` with ``file-bundled`` (the real datahub CLI), built once and reused."""
    from executor.sandbox.venv_build import ensure_bundled_venv

    root = ROOT / ".cache" / "venvs"
    ensure_bundled_venv(root, "file")
    return root


def executor_yaml(
    tmp_path: Path, cp: Any, venv_root: Path, extra: dict[str, Any] | None = None, pool: str = "default"
) -> Path:
    """A config file for one pool on ``cp`` with short waits; the token goes in the env instead."""
    config: dict[str, Any] = {
        "gms": {"url": cp.gms_url},
        "state_dir": str(tmp_path / "executor-state"),
        "observability": {"port": 0},
        "shutdown": {"drain_s": 30},
        "pools": [
            {
                "id": pool,
                "max_workers": 2,
                "poll_wait_s": 1,
                "progress_interval_s": 1,
                "venvs": {"bundled_root": str(venv_root), "dependency_resolution": False},
            }
        ],
        **(extra or {}),
    }
    path = tmp_path / f"executor-{len(list(tmp_path.glob('executor-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def file_recipe(tmp_path: Path, name: str, source: Path = DEMO_METADATA) -> dict[str, Any]:
    """The demo's metadata file (or ``source``) into a ``file`` sink under ``tmp_path``."""
    return {
        "source": {"type": "file", "config": {"path": str(source)}},
        "sink": {"type": "file", "config": {"filename": str(tmp_path / f"{name}-out.json")}},
    }


def request_run(cp: Any, recipe: dict[str, Any], pool: str = "default") -> str:
    """Create an ingestion source for ``recipe`` (bundled CLI) and request a run: the request URN."""
    config = {"recipe": json.dumps(recipe), "executorId": pool, "version": "bundled"}
    source_input = {"name": f"source-{time.monotonic_ns()}", "type": "file", "config": config}
    source = graphql(cp, CREATE_SOURCE, {"i": source_input})["createIngestionSource"]
    return str(graphql(cp, RUN_SOURCE, {"u": source})["createIngestionExecutionRequest"])


def wait_terminal(cp: Any, urn: str, timeout_s: float = 90.0) -> dict[str, Any]:
    """The request's terminal result, polled from the control plane's state with a deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = cp.get_aspect(urn, "dataHubExecutionRequestResult")
        if result is not None and result.get("status") in TERMINAL:
            return dict(result)
        time.sleep(0.1)
    raise AssertionError(f"{urn} reached no terminal status in {timeout_s:g}s")


# -- the tests ---------------------------------------------------------------------------------
def queue_state(cp: Any) -> tuple[int, int, list[int]]:
    """(visible, in flight, receive counts of the visible ones) on the pool's queue, from moto
    directly. Peeking is a receive with visibility 0, so each count includes this peek."""
    sqs = boto3.session.Session().client(
        "sqs", endpoint_url=cp.sqs_endpoint, region_name=REGION,
        aws_access_key_id="inspect", aws_secret_access_key="inspect",
    )
    try:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        url = cp.queue_url("default")
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        peeked = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
    finally:
        sqs.close()
    counts = [int(m["Attributes"]["ApproximateReceiveCount"]) for m in peeked]
    return int(attrs[names[0]]), int(attrs[names[1]]), counts


def run_once(tmp_path: Path, cp: Any) -> tuple[int, ExecutorProcess]:
    config = executor_yaml(tmp_path, cp, bundled_venv_root())
    process = ExecutorProcess(["run", "--once", "-c", str(config)], {"DATAHUB_GMS_TOKEN": cp.token})
    try:
        return process.wait(timeout=120), process
    finally:
        process.kill()


@pytest.mark.cli
@pytest.mark.slow
def test_once_runs_one_task_exits_with_its_status_and_leaves_the_other_queued(
    control_plane: Any, tmp_path: Path
) -> None:
    good = request_run(control_plane, file_recipe(tmp_path, "good"))
    bad = request_run(control_plane, file_recipe(tmp_path, "bad", source=tmp_path / "missing.json"))
    expected = {good: ("SUCCESS", 0), bad: ("FAILURE", 1)}

    code, first = run_once(tmp_path, control_plane)
    done = [u for u in expected if control_plane.get_aspect(u, "dataHubExecutionRequestResult")]
    assert len(done) == 1, f"--once ran {len(done)} requests"
    taken, left = done[0], next(u for u in expected if u not in done)
    assert wait_terminal(control_plane, taken, 1)["status"] == expected[taken][0]
    assert code == expected[taken][1], "".join(first.raw[-30:])
    assert queue_state(control_plane) == (1, 0, [1])  # the other: visible, never received before
    assert control_plane.get_aspect(left, "dataHubExecutionRequestResult") is None

    code, second = run_once(tmp_path, control_plane)
    assert wait_terminal(control_plane, left, 1)["status"] == expected[left][0]
    assert code == expected[left][1], "".join(second.raw[-30:])
    assert queue_state(control_plane) == (0, 0, [])
    assert control_plane.token not in "".join(first.raw + second.raw)
    assert not psutil.Process().children(recursive=True)
