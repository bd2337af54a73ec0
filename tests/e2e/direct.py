"""Requests written around the GraphQL API: the cases DataHub's UI cannot make.

An execution request is written with DataHub's own client and models (``DataHubGraph.emit_mcp``
-> ``ingestProposal``), and its message is queued with the envelope encoder the control plane
uses (``encode_envelope``), sent with leased credentials through the lease-checking gateway,
exactly as the control plane's own dispatch does.
"""

from __future__ import annotations

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
