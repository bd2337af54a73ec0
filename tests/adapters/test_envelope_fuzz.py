"""Fuzzing decode_message: any input yields a QueuedTask or BadInputError, never an echo of the body."""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.datahub.envelope import QueuedTask, decode_message, encode_envelope
from executor.errors import BadInputError

MARKER = "SECRETMARKER"
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=40), st.just("urn:li:dataHubExecutionRequest:" + MARKER), _json),
        "task": st.one_of(st.text(max_size=40), _json),
    },
)
_envelope = st.fixed_dictionaries({}, optional={"headers": st.one_of(_headers, _json), "body": _json,
                                                "urn": _json, "executionRequestUrn": _json})


def _bodies() -> st.SearchStrategy[str]:
    as_json = _envelope.map(json.dumps)
    as_b64 = as_json.map(lambda s: base64.b64encode(s.encode()).decode())
    return st.one_of(st.text(max_size=200), as_json, as_b64, _json.map(json.dumps))


def _check(body: str) -> None:
    try:
        task = decode_message(body)
    except BadInputError as exc:
        assert MARKER not in str(exc)
        assert body not in str(exc) or len(body) < 8  # tiny bodies may coincide with words
        return
    assert isinstance(task, QueuedTask)
    assert task.urn.startswith("urn:li:dataHubExecutionRequest:")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies())
def test_decode_never_raises_anything_else(body: str) -> None:
    _check(body)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60).map(lambda s: s + MARKER))
def test_errors_never_echo_the_body(noise: str) -> None:
    _check(base64.b64encode(json.dumps({"headers": {"id": noise}}).encode()).decode())
    _check(json.dumps({"urn": noise}))


@given(st.uuids())
def test_round_trip(request_id: object) -> None:
    urn = f"urn:li:dataHubExecutionRequest:{request_id}"
    assert decode_message(encode_envelope(urn, "default")).urn == urn
