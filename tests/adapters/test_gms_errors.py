"""GmsClient's error mapping, checked on statuses and bodies as read off the wire, and an unreachable GMS.

No fake GMS server: the behaviour against a server is tested with the control plane in
``test_gms.py``; statuses it never sends (429, 5xx) are checked on constructed responses.
"""

from __future__ import annotations

import json
import time

import pytest

from executor.datahub.gms import GmsClient, _graphql_error, _parse_batch, _raise_for_status
from executor.errors import (
    BadInputError,
    ConfigError,
    ImmutableError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)

TOKEN = "tok-" + "x" * 40


def response(status: int, body: object) -> tuple[int, bytes]:
    """What ``_raise_for_status`` is given: the status and the (capped) body bytes."""
    return status, (json.dumps(body) if not isinstance(body, str) else body).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, {"message": "slow down"}, ThrottledError),
        (500, {"message": "boom"}, TransportError),
        (503, "<html>proxy error</html>", TransportError),
        (401, {"message": "Unauthorized"}, NotAllowedError),
        (403, {"message": "Forbidden"}, NotAllowedError),
        (422, {"message": "execution request result is already terminal (SUCCESS)"}, ImmutableError),
        (400, {"message": "Result is Terminal"}, ImmutableError),
        (422, {"message": "aspect does not fit its model"}, BadInputError),
        (404, {"message": "not found"}, BadInputError),
    ],
)
def test_status_mapping(status: int, body: object, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info:
        _raise_for_status(*response(status, body), "write of x", TOKEN)
    assert f"HTTP {status}" in str(info.value)


def test_success_does_not_raise() -> None:
    _raise_for_status(*response(200, {}), "x", TOKEN)
    _raise_for_status(*response(204, ""), "x", TOKEN)


def test_token_is_scrubbed_and_messages_are_short() -> None:
    with pytest.raises(BadInputError) as info:
        _raise_for_status(*response(400, {"message": f"bad token {TOKEN} " + "y" * 1000}), "call", TOKEN)
    assert TOKEN not in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("code", "expected"),
    [(403, NotAllowedError), (401, NotAllowedError), (429, ThrottledError), (500, TransportError),
     (None, BadInputError), (400, BadInputError)],
)
def test_graphql_error_codes(code: int | None, expected: type[Exception]) -> None:
    error = {"message": "nope", "extensions": {"code": code}} if code else {"message": "nope"}
    assert type(_graphql_error("GraphQL q", [error], TOKEN)) is expected


def test_batch_answer_forms() -> None:
    answer = {"entities": [
        {"urn": "u1", "aspects": {"a": {"value": {"x": 1}}}},
        {"urn": "u2", "a": {"value": {"y": 2}}, "b": {"value": "not a dict"}},
        {"urn": "u3"},
        "garbage",
    ]}
    # A value that is not an object is kept: the caller's validation says what is wrong with it.
    assert _parse_batch(answer, ["a", "b"]) == {
        "u1": {"a": {"x": 1}}, "u2": {"a": {"y": 2}, "b": "not a dict"}, "u3": {}
    }
    with pytest.raises(TransportError):
        _parse_batch({"entities": "nope"}, ["a"])


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        GmsClient("gms.example:8080", TOKEN)


def test_repr_hides_the_token() -> None:
    client = GmsClient("http://127.0.0.1:1", TOKEN)
    try:
        assert TOKEN not in repr(client)
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_unreachable_gms_is_a_transport_error(closed_port: int) -> None:
    with GmsClient(f"http://127.0.0.1:{closed_port}", TOKEN, timeout_s=2.0) as client:
        started = time.monotonic()
        for call in (client.health, client.server_config, lambda: client.list_executor_configs("default"),
                     lambda: client.get_secret_values(["A"])):
            with pytest.raises(TransportError) as info:
                call()
            assert TOKEN not in str(info.value)
        assert time.monotonic() - started < 40  # every call bounded by its timeout
