"""The ingestProposal body, encoded once and sent in slices, says what DataHub's own client would
send, and its declared length is the length of what it sends."""

from __future__ import annotations

import json

from executor.datahub.proposal import SEND_SLICE, ProposalBody
from executor.json_slices import ONE_PIECE_CHARS, ascii_slices, dump_pieces, escaped_length

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


def test_a_small_result_is_one_send_and_a_large_one_bounded_slices() -> None:
    small = ProposalBody(ENTITY, "urn:li:x:1", ASPECT, {"status": "SUCCESS", "report": "ok\n" * 20}, 1)
    assert len(list(small)) == 1  # one send, not one per token of the dump
    large = ProposalBody(ENTITY, "urn:li:x:1", ASPECT, {"status": "SUCCESS", "report": '"\\' * SEND_SLICE}, 1)
    chunks = list(large)
    assert len(chunks) > 2 and sum(map(len, chunks)) == len(large)
    assert all(len(c) <= 2 * SEND_SLICE for c in chunks)  # a slice escaped: at most twice its size


def test_slices_of_a_dump_are_the_dump_and_escaped_slices_its_json_string() -> None:
    value = {"report": "x\"y\\z\u00e9\n" * 50_000, "n": [1, 2.5, None, True], "s": "short"}
    text = json.dumps(value)
    for size in (1, 7, 4096, 1 << 20):
        pieces = dump_pieces(value)
        assert b"".join(ascii_slices(pieces, size)) == text.encode()
        assert b"".join(ascii_slices(pieces, size, escaped=True)) == json.dumps(text)[1:-1].encode()
        assert escaped_length(pieces) == len(json.dumps(text)) - 2
        assert all(len(s) <= size for s in ascii_slices(pieces, size))


def test_a_value_that_may_dump_long_keeps_the_encoders_pieces_and_a_small_one_is_one() -> None:
    """The C encoder dumps a small value whole; a value whose dump may pass ``ONE_PIECE_CHARS``
    (bounded by its strings' lengths times the longest escape) keeps the pieces, never joined."""
    small = {"status": "SUCCESS", "report": "\U0001f600 line\n" * 100, "n": [1, 2.5, None, True]}
    assert dump_pieces(small) == [json.dumps(small)]
    emoji = "\U0001f600" * (ONE_PIECE_CHARS // 12 + 1)  # 12 characters each once escaped
    for large in ({"report": emoji}, [["x" * 100] * (ONE_PIECE_CHARS // 100)]):
        pieces = dump_pieces(large)
        assert len(pieces) > 1 and "".join(pieces) == json.dumps(large)
