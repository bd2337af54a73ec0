"""REST API over real HTTP, driven by DataHub's own Python client where it has a call for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
from datahub.metadata.schema_classes import (
    DatasetPropertiesClass,
    ExecutionRequestResultClass,
    StructuredExecutionReportClass,
)

REQUEST_URN = "urn:li:dataHubExecutionRequest:rest-test"
PRESENCE_URN = "urn:li:dataHubRemoteExecutor:abcd1234-efgh5678.default.localhost"


@pytest.fixture
def graph(control_plane: Any) -> Iterator[DataHubGraph]:
    client = DataHubGraph(DatahubClientConfig(server=control_plane.gms_url, token=control_plane.token))
    try:
        yield client
    finally:
        client.close()


def post(cp: Any, path: str, body: object, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or cp.token}"}
    return requests.post(f"{cp.gms_url}{path}", json=body, headers=headers, timeout=10)


def proposal(urn: str, entity: str, aspect: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "entityType": entity,
        "entityUrn": urn,
        "changeType": "UPSERT",
        "aspectName": aspect,
        "aspect": {"value": json.dumps(value), "contentType": "application/json"},
    }


def test_datahub_client_graphql_emit_and_get_aspect(control_plane: Any, graph: DataHubGraph) -> None:
    graph.test_connection()
    assert graph.get_config()["noCode"] == "true"
    assert graph.execute_graphql("query { listSecrets(input: {}) { total } }") == {
        "listSecrets": {"total": 0}
    }

    dataset = "urn:li:dataset:(urn:li:dataPlatform:hive,db.table,PROD)"
    graph.emit_mcp(
        MetadataChangeProposalWrapper(entityUrn=dataset, aspect=DatasetPropertiesClass(description="d"))
    )
    properties = graph.get_aspect(dataset, DatasetPropertiesClass)
    assert properties is not None and properties.description == "d"
    assert (
        graph.get_aspect("urn:li:dataset:(urn:li:dataPlatform:hive,none,PROD)", DatasetPropertiesClass)
        is None
    )

    report = StructuredExecutionReportClass(
        type="RUN_INGEST", serializedValue="{}", contentType="application/json"
    )
    result = ExecutionRequestResultClass(
        status="SUCCESS", startTimeMs=1, durationMs=2, report="ok", structuredReport=report
    )
    graph.emit_mcp(MetadataChangeProposalWrapper(entityUrn=REQUEST_URN, aspect=result))
    assert graph.get_aspect(REQUEST_URN, ExecutionRequestResultClass) == result


def test_result_writes_after_a_terminal_status_are_refused(control_plane: Any, graph: DataHubGraph) -> None:
    for status in ("RUNNING", "RUNNING", "SUCCESS"):
        graph.emit_mcp(
            MetadataChangeProposalWrapper(
                entityUrn=REQUEST_URN, aspect=ExecutionRequestResultClass(status=status)
            )
        )
    late = proposal(
        REQUEST_URN, "dataHubExecutionRequest", "dataHubExecutionRequestResult", {"status": "RUNNING"}
    )
    answer = post(control_plane, "/aspects?action=ingestProposal", {"proposal": late, "async": "false"})
    assert answer.status_code == 422
    assert "terminal" in answer.json()["message"]
    assert [
        v["status"] for v in control_plane.aspect_history(REQUEST_URN, "dataHubExecutionRequestResult")
    ] == [
        "RUNNING",
        "RUNNING",
        "SUCCESS",
    ]


@pytest.mark.parametrize("status", ["CANCELLED", "ABORTED", "DUPLICATE"])
def test_other_immutable_statuses(control_plane: Any, status: str) -> None:
    aspect = "dataHubExecutionRequestResult"
    first = proposal(REQUEST_URN, "dataHubExecutionRequest", aspect, {"status": status})
    assert post(control_plane, "/aspects?action=ingestProposal", {"proposal": first}).status_code == 200
    again = proposal(REQUEST_URN, "dataHubExecutionRequest", aspect, {"status": "SUCCESS"})
    assert post(control_plane, "/aspects?action=ingestProposal", {"proposal": again}).status_code == 422


def test_failure_may_be_overwritten(control_plane: Any) -> None:
    aspect = "dataHubExecutionRequestResult"
    for status in ("FAILURE", "RUNNING", "SUCCESS"):
        body = {"proposal": proposal(REQUEST_URN, "dataHubExecutionRequest", aspect, {"status": status})}
        assert post(control_plane, "/aspects?action=ingestProposal", body).status_code == 200


def test_invalid_execution_request_aspects_are_rejected(control_plane: Any) -> None:
    cases = [
        ("dataHubExecutionRequestResult", {"startTimeMs": 1}),
        ("dataHubExecutionRequestResult", {"status": "RUNNING", "startTimeMs": "soon"}),
        ("dataHubExecutionRequestResult", {"status": "RUNNING", "unknownField": 1}),
        ("dataHubExecutionRequestSignal", {"signal": "KILL"}),
        ("dataHubExecutionRequestInput", {"task": "RUN_INGEST"}),
    ]
    for aspect, value in cases:
        body = {"proposal": proposal(REQUEST_URN, "dataHubExecutionRequest", aspect, value)}
        answer = post(control_plane, "/aspects?action=ingestProposal", body)
        assert answer.status_code == 422, (aspect, value, answer.text)
        assert aspect in answer.json()["message"]
    assert control_plane.list_aspects("dataHubExecutionRequest") == []


def test_a_batch_is_all_or_nothing(control_plane: Any) -> None:
    good = proposal(
        REQUEST_URN, "dataHubExecutionRequest", "dataHubExecutionRequestResult", {"status": "RUNNING"}
    )
    bad = proposal(REQUEST_URN, "dataHubExecutionRequest", "dataHubExecutionRequestSignal", {"nope": 1})
    answer = post(control_plane, "/aspects?action=ingestProposalBatch", {"proposals": [good, bad]})
    assert answer.status_code == 422
    assert control_plane.get_aspect(REQUEST_URN, "dataHubExecutionRequestResult") is None
    answer = post(control_plane, "/aspects?action=ingestProposalBatch", {"proposals": [good, good]})
    assert answer.status_code == 200
    assert answer.json() == {"value": [REQUEST_URN, REQUEST_URN]}


def test_key_aspect_proposals_and_malformed_proposals(control_plane: Any) -> None:
    by_key = {
        "entityType": "dataHubExecutionRequest",
        "entityKeyAspect": {"value": json.dumps({"id": "by-key"}), "contentType": "application/json"},
        "changeType": "UPSERT",
        "aspectName": "dataHubExecutionRequestResult",
        "aspect": {"value": json.dumps({"status": "RUNNING"}), "contentType": "application/json"},
    }
    answer = post(control_plane, "/aspects?action=ingestProposal", {"proposal": by_key})
    assert answer.json() == {"value": "urn:li:dataHubExecutionRequest:by-key"}
    for broken in (
        {},
        {"entityType": "dataset"},
        dict(by_key, aspect={"value": "{"}),
        dict(by_key, changeType="PATCH"),
    ):
        assert post(control_plane, "/aspects?action=ingestProposal", {"proposal": broken}).status_code == 422


def test_openapi_batch_read(control_plane: Any) -> None:
    value = {"status": "RUNNING", "report": "line"}
    body = {
        "proposal": proposal(REQUEST_URN, "dataHubExecutionRequest", "dataHubExecutionRequestResult", value)
    }
    post(control_plane, "/aspects?action=ingestProposal", body)
    ask = {
        "urns": [REQUEST_URN, "urn:li:dataHubExecutionRequest:none"],
        "aspectNames": ["dataHubExecutionRequestResult"],
    }
    answer = post(control_plane, "/openapi/v2/entity/batch/dataHubExecutionRequest", ask)
    assert answer.status_code == 200
    assert answer.json()["entities"] == [
        {"urn": REQUEST_URN, "aspects": {"dataHubExecutionRequestResult": {"value": value}}}
    ]
    wrong_type = post(control_plane, "/openapi/v2/entity/batch/dataset", ask)
    assert wrong_type.status_code == 400


def test_config_reports_no_version_and_health_needs_no_token(control_plane: Any) -> None:
    config = requests.get(
        f"{control_plane.gms_url}/config",
        headers={"Authorization": f"Bearer {control_plane.token}"},
        timeout=10,
    ).json()
    assert config["noCode"] == "true"
    assert "versions" not in config
    assert requests.get(f"{control_plane.gms_url}/health", timeout=10).status_code == 200


def test_presence_records_are_stored_checked_and_listable(control_plane: Any) -> None:
    status = {
        "executorPoolId": "default",
        "executorReleaseVersion": "0.1.0",
        "executorHostname": "host",
        "executorUptime": 12.5,
        "executorExpired": False,
        "executorStopped": False,
        "executorEmbedded": False,
        "reportedAt": 1700000000,
        "channel": "SQS",
    }
    good = proposal(PRESENCE_URN, "dataHubRemoteExecutor", "dataHubRemoteExecutorStatus", status)
    assert post(control_plane, "/aspects?action=ingestProposal", {"proposal": good}).status_code == 200
    for broken in (
        {**status, "executorStopped": "no"},
        {**status, "channel": "HTTP"},
        {"reportedAt": 1},
        {**status, "x": 1},
    ):
        bad = proposal(PRESENCE_URN, "dataHubRemoteExecutor", "dataHubRemoteExecutorStatus", broken)
        assert post(control_plane, "/aspects?action=ingestProposal", {"proposal": bad}).status_code == 422

    listed = requests.get(
        f"{control_plane.gms_url}/openapi/v2/entity/dataHubRemoteExecutor",
        params={"aspectNames": "dataHubRemoteExecutorStatus"},
        headers={"Authorization": f"Bearer {control_plane.token}"},
        timeout=10,
    ).json()
    assert listed == {
        "entities": [{"urn": PRESENCE_URN, "aspects": {"dataHubRemoteExecutorStatus": {"value": status}}}]
    }


def test_unknown_paths_and_actions(control_plane: Any) -> None:
    assert post(control_plane, "/nope", {}).status_code == 404
    assert post(control_plane, "/aspects?action=delete", {}).status_code == 400
