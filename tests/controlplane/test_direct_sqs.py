"""Pools that lease moto's own queue URL (``direct_sqs_pools``, the bench's comparative rows).

Their executors talk to moto with nothing between, as a real executor talks to AWS SQS: the
credentials are still leased from the control plane (and refreshed), the other pools keep the
lease-checking gateway, and moto keeps every client's connection alive, as SQS does. A real
executor runs a task on such a pool end to end across lease refreshes and a visibility
extension, and the message is deleted.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from executor.datahub.envelope import decode_message
from executor.errors import BadInputError
from executor.local.controlplane.aws import REGION
from executor.local.controlplane.leases import LeaseState
from executor.local.controlplane.server import ControlPlane
from tests.faults.ledger import wait_until
from tests.fixtures.controlplane import executor_config, leased_client
from tests.fixtures.executor import running_executor

LIST_QUEUES = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "AmazonSQS.ListQueues",
    "Authorization": f"AWS4-HMAC-SHA256 Credential=test/20240101/{REGION}/sqs/aws4_request, "
    "SignedHeaders=host;x-amz-target, Signature=unsigned",
}


def _two_calls_on_one_connection(endpoint: str) -> list[str | None]:
    """The ``Connection`` header of two ListQueues answers, the second sent on the first's socket
    (``http.client`` would open a new one after ``Connection: close``: then it fails here)."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    headers: list[str | None] = []
    try:
        for _ in range(2):
            conn.request("POST", "/", b"{}", LIST_QUEUES)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200
            headers.append(answer.getheader("Connection"))
            if answer.getheader("Connection") == "close":
                break
            conn.auto_open = 0  # the second call must reuse this socket
    finally:
        conn.close()
    return headers


def test_a_direct_pool_leases_motos_queue_url_and_the_others_keep_the_gateway(tmp_path: Path) -> None:
    plane = ControlPlane(pools=("default", "other"), state_dir=str(tmp_path), direct_sqs_pools=["default"])
    with plane as cp:
        direct, gated = executor_config(cp, "default"), executor_config(cp, "other")
        assert direct["queueUrl"] == cp.queue_url("default")
        assert direct["queueUrl"].startswith(cp.sqs_endpoint + "/")
        assert gated["queueUrl"] == cp.gateway_queue_url("other")
        assert cp.info()["pools"]["default"]["queue_url"] == direct["queueUrl"]
        assert cp.leases.check(direct["accessKeyId"])[0] is LeaseState.VALID  # still leased

        sqs = leased_client(cp.sqs_endpoint, direct)
        try:
            urn = "urn:li:dataHubExecutionRequest:direct-1"
            cp.plant_request("default", urn, {"task": "RUN_INGEST"})
            got = sqs.receive_message(QueueUrl=direct["queueUrl"], WaitTimeSeconds=1)["Messages"]
            assert decode_message(got[0]["Body"]).urn == urn  # the dispatch, received directly
            sqs.delete_message(QueueUrl=direct["queueUrl"], ReceiptHandle=got[0]["ReceiptHandle"])
        finally:
            sqs.close()
        assert _two_calls_on_one_connection(cp.sqs_endpoint) == [None, None]  # kept, as SQS keeps it


def test_without_direct_pools_moto_closes_other_clients_connections(control_plane: ControlPlane) -> None:
    assert control_plane.direct_sqs_pools == frozenset()
    assert executor_config(control_plane, "default")["queueUrl"] == control_plane.gateway_queue_url("default")
    assert _two_calls_on_one_connection(control_plane.sqs_endpoint) == ["close"]


def test_direct_pools_must_be_pools_of_the_control_plane() -> None:
    with pytest.raises(BadInputError, match="direct_sqs_pools"):
        ControlPlane(pools=("default",), direct_sqs_pools=["elsewhere"])


def _standin_recipe(stamps: Path, **config: Any) -> dict[str, Any]:
    """The bench's stand-in CLI (``bench/standin.py``) with one DataHub secret in its recipe."""
    source = {"stamps": str(stamps), "tag": "unused", "password": "${DIRECT_SECRET}", **config}
    return {"source": {"type": "benchsim", "config": source}, "sink": {"type": "console"}}


@pytest.mark.slow
def test_an_executor_on_a_direct_pool_runs_across_lease_refreshes(tmp_path: Path) -> None:
    from bench.world import make_venv_root, read_stamp

    venvs, stamps = make_venv_root(tmp_path / "venvs"), tmp_path / "stamps"
    stamps.mkdir()
    pools = [{"id": "default", "visibility_s": 10}]
    with (
        ControlPlane(pools=("default",), state_dir=str(tmp_path / "cp"), lease_seconds=6,
                     direct_sqs_pools=["default"]) as cp,
        running_executor(cp, tmp_path / "executor" / "state", venvs, pools=pools) as harness,
    ):
        harness.create_secret("DIRECT_SECRET", "direct-secret-4d2b")
        # longer than a third of its visibility: its message is extended, on moto itself
        _, urn = harness.submit(_standin_recipe(stamps, mode="sleep", seconds=5))
        wait_until(lambda: read_stamp(stamps, f"{urn.rsplit(':', 1)[-1]}.start"), 60, "the stand-in to start")
        wait_until(lambda: _extended_once_received(cp, "default", 10), 30, "the message extended on moto")
        cp.expire_leases("default")  # SQS does not check a direct pool's keys: nothing is refused
        assert harness.wait_delivered(urn, 60) == "SUCCESS"
        wait_until(lambda: harness.logs.text().count("lease obtained (scheduled)") >= 2, 30,
                   "two scheduled lease refreshes")
        _, later = harness.submit(_standin_recipe(stamps, mode="trivial"))  # on a refreshed lease
        assert harness.wait_delivered(later, 60) == "SUCCESS"
        assert [line for line in harness.logs.for_request(urn) if "starting " in line][1:] == []
        text = harness.logs.text()
        assert "refused the leased credentials" not in text
        assert "could not extend" not in text and "lost the message" not in text
        sqs = leased_client(cp.sqs_endpoint, executor_config(cp, "default"))
        try:
            wait_until(lambda: _depth(sqs, cp.queue_url("default")) == (0, 0), 30, "both messages deleted")
        finally:
            sqs.close()


def _depth(sqs: Any, url: str) -> tuple[int, int]:
    """Visible and in-flight messages of a queue."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def _extended_once_received(cp: ControlPlane, pool: str, visibility_s: int) -> bool:
    """Whether moto holds a message of the pool's queue, received once, whose visibility was moved
    past its first receive's window (a ``ChangeMessageVisibility`` reached moto). Read from moto's
    own state: it runs in this process."""
    from moto.sqs.models import sqs_backends

    from executor.local.controlplane.aws import ACCOUNT_ID

    queue = sqs_backends[ACCOUNT_ID][REGION].get_queue(cp.queue_url(pool).rsplit("/", 1)[-1])
    window_ms = visibility_s * 1000 + 500
    return any(
        message.approximate_receive_count == 1
        and message.visible_at > (message.approximate_first_receive_timestamp or 0) + window_ms
        for message in list(queue._messages)
    )
