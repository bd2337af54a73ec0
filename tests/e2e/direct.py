"""Requests written around the GraphQL API: the cases DataHub's UI cannot make.

An execution request is written with DataHub's own client and models (``DataHubGraph.emit_mcp``
-> ``ingestProposal``), and its message is queued with the envelope encoder the control plane
uses (``encode_envelope``), sent with leased credentials through the lease-checking gateway,
exactly as the control plane's own dispatch does.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from tests.fixtures.controlplane import leased_sqs

if TYPE_CHECKING:
    from executor.local.controlplane.server import ControlPlane

PREFIX = "urn:li:dataHubExecutionRequest:"


def new_request_urn() -> str:
    """A fresh execution-request URN."""
    return PREFIX + str(uuid.uuid4())


def write_request(
    cp: ControlPlane,
    urn: str,
    task: str,
    args: dict[str, str],
    pool: str = "default",
    result: dict[str, Any] | None = None,
) -> None:
    """Write ``dataHubExecutionRequestInput`` (and optionally a result) with DataHub's client."""
    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
    from datahub.metadata.schema_classes import (
        ExecutionRequestInputClass,
        ExecutionRequestResultClass,
        ExecutionRequestSourceClass,
    )

    request = ExecutionRequestInputClass(
        task=task,
        args=args,
        executorId=pool,
        source=ExecutionRequestSourceClass(type="MANUAL_INGESTION_SOURCE"),
        requestedAt=int(time.time() * 1000),
        actorUrn="urn:li:corpuser:datahub",
    )
    graph = DataHubGraph(DatahubClientConfig(server=cp.gms_url, token=cp.token))
    try:
        graph.emit_mcp(MetadataChangeProposalWrapper(entityUrn=urn, aspect=request))
        if result is not None:
            aspect = ExecutionRequestResultClass.from_obj(result)
            graph.emit_mcp(MetadataChangeProposalWrapper(entityUrn=urn, aspect=aspect))
    finally:
        graph.close()


def send_envelope(cp: ControlPlane, urn: str, pool: str = "default") -> None:
    """Queue ``urn`` for ``pool`` as the control plane's dispatch does."""
    from executor.datahub.envelope import encode_envelope

    client, queue_url = leased_sqs(cp, pool)
    try:
        client.send_message(QueueUrl=queue_url, MessageBody=encode_envelope(urn, pool))
    finally:
        client.close()


def queue_depth(cp: ControlPlane, pool: str = "default") -> int:
    """Messages on the pool's queue and its dead-letter queue, visible or in flight (read on moto)."""
    import boto3

    from executor.local.controlplane.aws import REGION

    client = boto3.session.Session().client(
        "sqs",
        endpoint_url=cp.sqs_endpoint,
        region_name=REGION,
        aws_access_key_id="inspect",
        aws_secret_access_key="inspect",  # moto accepts any key
    )
    try:
        total = 0
        for url in (cp.queue_url(pool), cp.dlq_url(pool)):
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            total += sum(int(attrs[n]) for n in names)
        return total
    finally:
        client.close()


class SilentServer:
    """A loopback server that accepts connections and never answers: a sink there waits a long time.

    ``connections`` counts accepted connections, so a test knows the CLI is inside its run.
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="e2e-silent-server", daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # timeout: look at the stop flag again
                continue
            self._held.append(conn)
            self.connections += 1

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for conn in self._held:
            conn.close()
        self._sock.close()
