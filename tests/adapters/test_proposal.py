"""The ingestProposal body, encoded once, says what DataHub's own client would send."""

from __future__ import annotations

import json

from executor.datahub.proposal import proposal_body

ENTITY, ASPECT = "dataHubExecutionRequest", "dataHubExecutionRequestResult"


def test_the_body_is_the_proposal_with_its_aspect_as_a_json_string() -> None:
    report = "".join(f'{i} "quoted" \\ tab\t \u00e9 \u2603 \U0001f600\n' for i in range(50))
    value = {"status": "SUCCESS", "report": report, "executorInstanceId": None,
             "nested": {"a": None, "b": [1, None]}}
    body = proposal_body(ENTITY, "urn:li:x:1", ASPECT, value, 1234)
    assert body.isascii()
    sent = json.loads(body)
    assert sent["async"] == "false"
    proposal = sent["proposal"]
    aspect = proposal.pop("aspect")
    assert proposal == {"entityType": ENTITY, "entityUrn": "urn:li:x:1", "changeType": "UPSERT",
                        "aspectName": ASPECT,
                        "systemMetadata": {"lastObserved": 1234, "runId": "no-run-id-provided"}}
    assert aspect["contentType"] == "application/json"
    assert json.loads(aspect["value"]) == {"status": "SUCCESS", "report": report, "nested": {"b": [1, None]}}
