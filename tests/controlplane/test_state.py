"""State across restarts, and secrets at rest with and without a key."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from executor.errors import ConfigError
from executor.local.controlplane.server import ControlPlane
from tests.fixtures.controlplane import graphql, leased_sqs

RECIPE = json.dumps({"source": {"type": "file", "config": {"path": "x"}}, "sink": {"type": "console"}})
SECRET_VALUE = "correct-horse-battery-staple"


def populate(cp: ControlPlane) -> tuple[str, str]:
    graphql(cp, 'mutation($v: String!) { createSecret(input: {name: "PW", value: $v}) }', {"v": SECRET_VALUE})
    source = {"name": "s", "type": "file", "config": {"recipe": RECIPE, "executorId": "default"}}
    source_urn = graphql(
        cp, "mutation($i: UpdateIngestionSourceInput!) { createIngestionSource(input: $i) }", {"i": source}
    )["createIngestionSource"]
    urn = graphql(
        cp,
        "mutation($u: String!) { createIngestionExecutionRequest(input: {ingestionSourceUrn: $u}) }",
        {"u": source_urn},
    )["createIngestionExecutionRequest"]
    cp.aspects.put(urn, "dataHubExecutionRequestResult", {"status": "RUNNING"})
    cp.aspects.put(urn, "dataHubExecutionRequestResult", {"status": "SUCCESS", "report": "done"})
    cp.aspects.put("urn:li:corpuser:someone", "corpUserInfo", {"active": True, "displayName": "Some One"})
    return source_urn, urn


def test_a_restart_with_the_same_state_keeps_everything(tmp_path: Any) -> None:
    state = str(tmp_path / "state")
    with ControlPlane(pools=("default",), state_dir=state) as cp:
        source_urn, urn = populate(cp)
        first_queue = cp.queue_url("default")

    with ControlPlane(pools=("default",), state_dir=state) as cp:
        assert graphql(cp, 'query { getSecretValues(input: {secrets: ["PW"]}) { value } }') == {
            "getSecretValues": [{"value": SECRET_VALUE}]
        }
        sources = graphql(cp, "query { listIngestionSources(input: {}) { ingestionSources { urn } } }")
        assert sources["listIngestionSources"]["ingestionSources"] == [{"urn": source_urn}]
        request = graphql(
            cp, "query($u: String!) { executionRequest(urn: $u) { result { status report } } }", {"u": urn}
        )
        assert request["executionRequest"]["result"] == {"status": "SUCCESS", "report": "done"}
        assert [v["status"] for v in cp.aspect_history(urn, "dataHubExecutionRequestResult")] == [
            "RUNNING",
            "SUCCESS",
        ]
        assert cp.get_aspect("urn:li:corpuser:someone", "corpUserInfo")["displayName"] == "Some One"
        assert cp.get_aspect(urn, "dataHubExecutionRequestInput")["task"] == "RUN_INGEST"

        # The queue is new (moto is in memory) and works with a fresh lease.
        assert cp.queue_url("default") != first_queue
        sqs, queue_url = leased_sqs(cp, "default")
        assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages") is None


def _db_bytes(state: str) -> bytes:
    data = b""
    for name in os.listdir(state):
        with open(os.path.join(state, name), "rb") as handle:
            data += handle.read()
    return data


def test_secrets_are_encrypted_at_rest_with_a_key(tmp_path: Any) -> None:
    state = str(tmp_path / "state")
    with ControlPlane(pools=("default",), state_dir=state, secret_key=b"operator key") as cp:
        assert cp.info()["secrets_encrypted"] is True
        populate(cp)
    assert SECRET_VALUE.encode() not in _db_bytes(state)

    with ControlPlane(pools=("default",), state_dir=state, secret_key=b"operator key") as cp:
        values = graphql(cp, 'query { getSecretValues(input: {secrets: ["PW"]}) { value } }')
        assert values["getSecretValues"] == [{"value": SECRET_VALUE}]

    with pytest.raises(ConfigError, match="key"):
        ControlPlane(pools=("default",), state_dir=state, secret_key=b"wrong key").start()


def test_plain_secrets_are_encrypted_once_a_key_is_configured(tmp_path: Any) -> None:
    state = str(tmp_path / "state")
    with ControlPlane(pools=("default",), state_dir=state) as cp:
        assert cp.info()["secrets_encrypted"] is False
        populate(cp)
    with ControlPlane(pools=("default",), state_dir=state, secret_key=b"k") as cp:
        values = graphql(cp, 'query { getSecretValues(input: {secrets: ["PW"]}) { value } }')
        assert values["getSecretValues"] == [{"value": SECRET_VALUE}]
    with ControlPlane(pools=("default",), state_dir=state, secret_key=b"k") as cp:
        pass
    assert SECRET_VALUE.encode() not in _db_bytes(state)


def test_a_temporary_state_is_removed_at_stop() -> None:
    cp = ControlPlane(pools=("default",)).start()
    state = cp.state_dir
    assert state is not None and os.path.isdir(state)
    cp.stop()
    assert not os.path.exists(state)
    cp.stop()  # idempotent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pools": ()}, "at least one pool"),
        ({"pools": ("a b",)}, "pool ids"),
        ({"pools": ("a", "a")}, "unique"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"max_receive_count": 0}, "max_receive_count"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs: dict[str, Any], message: str) -> None:
    from executor.errors import BadInputError

    with pytest.raises(BadInputError, match=message):
        ControlPlane(**kwargs)
