"""/healthz, /readyz and /metrics of a running executor (a real process) against the control plane.

The executor starts before its control plane exists: it is live but not ready, and /readyz
says why (no lease, GMS unreachable). Once the control plane is up it leases and polls:
ready. After a task, /metrics shows it by pool and status, with busy and configured slots,
seconds left on the lease, the outbox depth and the queue's depth. Then the control plane
comes back with a rotated token: the old credentials are unknown, the lease cannot be renewed
(401), and /readyz turns 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from executor.local.controlplane.server import ControlPlane
from tests.ops.http import Answer, get
from tests.ops.test_once import bundled_venv_root, executor_yaml, file_recipe, request_run, wait_terminal
from tests.service.processes import ExecutorProcess, closed_port

DEADLINE_S = 60.0


def poll(what: str, probe: Callable[[], Any], timeout_s: float = DEADLINE_S) -> Any:
    """``probe()``'s first truthy answer, asked every 0.1 s until the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as exc:  # the endpoint is not listening yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last!r}")


def answer_if(url: str, status: int) -> Answer | None:
    answer = get(url)
    return answer if answer.status == status else None


def readiness_reason(base: str, status: int) -> str:
    """The default pool's readiness reason while ``/readyz`` answers ``status``, else ''."""
    answer = answer_if(f"{base}/readyz", status)
    pool = answer.json()["pools"].get("default") if answer is not None else None
    return str(pool["reason"]) if pool is not None else ""  # none yet: the pool is starting


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from the Prometheus text format."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


POOL = (("pool", "default"),)


def lease_refused(record: dict[str, Any]) -> bool:
    """The leaser's log line for a lease refresh GMS answered with 401."""
    message = str(record.get("msg", ""))
    return "listExecutorConfigs failed" in message and "401" in message


def task_metrics_seen(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    samples = metric_samples(get(f"{base}/metrics").text)
    success = samples.get(("remote_executor_tasks_total", (("pool", "default"), ("status", "SUCCESS"))))
    lease = samples.get(("remote_executor_lease_seconds_left", POOL))
    depth = samples.get(("remote_executor_queue_depth_approximate", POOL))
    done = success == 1.0 and lease is not None and depth is not None
    return samples if done else None


@pytest.mark.cli
@pytest.mark.slow
def test_health_readiness_and_metrics_of_a_running_executor(tmp_path: Path) -> None:
    gms_port, gateway_port, obs_port = closed_port(), closed_port(), closed_port()
    token = "observability-test-token-1234567890"
    future_cp = type("FutureControlPlane", (), {"gms_url": f"http://127.0.0.1:{gms_port}"})()
    extra = {"observability": {"port": obs_port}}
    config = executor_yaml(tmp_path, future_cp, bundled_venv_root(), extra=extra)
    base = f"http://127.0.0.1:{obs_port}"

    def control_plane(with_token: str) -> ControlPlane:
        return ControlPlane(pools=("default",), token=with_token, port=gms_port, gateway_port=gateway_port,
                            state_dir=str(tmp_path / "cp-state")).start()

    executor = ExecutorProcess(["run", "-c", str(config)], {"DATAHUB_GMS_TOKEN": token})
    try:
        poll("/healthz 200", lambda: answer_if(f"{base}/healthz", 200))
        # The endpoint answers before the pool has started (none listed yet), then "waiting for
        # the first lease" until the first lease request has failed.
        reason = poll("/readyz 503 without a lease",
                      lambda: "no lease" in (said := readiness_reason(base, 503)) and said)
        assert "unreachable" in reason

        cp = control_plane(token)
        try:
            ready = poll("/readyz 200 once leased", lambda: answer_if(f"{base}/readyz", 200)).json()
            assert ready["pools"]["default"] == {"ready": True, "reason": "leased and polling"}
            urn = request_run(cp, file_recipe(tmp_path, "observed"))
            assert wait_terminal(cp, urn)["status"] == "SUCCESS"
            samples = poll("task metrics", lambda: task_metrics_seen(base))
        finally:
            cp.stop()
        assert samples[("remote_executor_busy_slots", POOL)] == 0.0
        assert samples[("remote_executor_capacity_slots", POOL)] == 2.0
        assert samples[("remote_executor_outbox_depth", POOL)] == 0.0
        assert 3000 < samples[("remote_executor_lease_seconds_left", POOL)] <= 3600
        assert samples[("remote_executor_task_duration_seconds_count", POOL)] == 1.0

        rotated = control_plane("a-rotated-token-the-executor-does-not-have")
        try:
            executor.wait_for_log(lease_refused)
            # the first 503 may still name the control plane's downtime just before (the poller's
            # receive failed to connect); the reason to wait for is the refused credentials
            poll("/readyz 503 naming the refused credentials",
                 lambda: "InvalidClientTokenId" in readiness_reason(base, 503))
            assert get(f"{base}/healthz").status == 200  # not ready, but alive: no restart wanted
        finally:
            rotated.stop()
        assert executor.terminate(timeout=60) == 0
    finally:
        executor.kill()
    assert token not in "".join(executor.raw)
    assert not psutil.Process().children(recursive=True)
