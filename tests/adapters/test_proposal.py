"""The ingestProposal body, encoded once and sent in slices, says what DataHub's own client would
send, and its declared length is the length of what it sends."""

from __future__ import annotations

import json

from executor.datahub.proposal import SEND_SLICE, ProposalBody

ENTITY, ASPECT = "dataHubExecutionRequest", "dataHubExecutionRequestResult"


def test_the_body_is_the_proposal_with_its_aspect_as_a_json_string() -> None:
    report = "".join(f'{i} "quoted" \\ tab\t \u00e9 \u2603 \U0001f600\n' for i in range(20000))
    value = {"status": "SUCCESS", "report": report, "executorInstanceId": None,
             "nested": {"a": None, "b": [1, None]}}
    made = ProposalBody(ENTITY, "urn:li:x:1", ASPECT, value, 1234)
    body = b"".join(made)
    assert len(body) > 4 * SEND_SLICE and len(made) == len(body) and body.isascii()
    assert b"".join(made) == body  # a resend sends the same bytes
    sent = json.loads(body)
    assert sent["async"] == "false"
    proposal = sent["proposal"]
    aspect = proposal.pop("aspect")
    assert proposal == {"entityType": ENTITY, "entityUrn": "urn:li:x:1", "changeType": "UPSERT",
                        "aspectName": ASPECT,
                        "systemMetadata": {"lastObserved": 1234, "runId": "no-run-id-provided"}}
    assert aspect["contentType"] == "application/json"
    assert json.loads(aspect["value"]) == {"status": "SUCCESS", "report": report, "nested": {"b": [1, None]}}
