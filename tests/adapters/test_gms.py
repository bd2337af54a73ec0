"""GmsClient against the local control plane over real HTTP: leases, secrets, aspects, errors."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from executor.datahub import aspects
from executor.datahub import gms as gms_module
from executor.datahub.aspects import ExecutionRequest
from executor.datahub.envelope import decode_message
from executor.datahub.gms import GmsClient
from executor.errors import (
    BadInputError,
    ImmutableError,
    LeaseExpiredError,
    MissingSecretError,
    NotAllowedError,
    TransportError,
)
from executor.queue.sqs import SqsQueue
from executor.secrets import DataHubStore, EnvStore, resolve_secrets

CREATE_SOURCE = """
mutation createIngestionSource($input: UpdateIngestionSourceInput!) { createIngestionSource(input: $input) }
"""
RUN_SOURCE = """
mutation createIngestionExecutionRequest($input: CreateIngestionExecutionRequestInput!) {
  createIngestionExecutionRequest(input: $input)
}
"""
CREATE_SECRET = """
mutation createSecret($input: CreateSecretInput!) { createSecret(input: $input) }
"""
RECIPE = {"source": {"type": "file", "config": {"path": "${INPUT_PATH}"}}, "sink": {"type": "console"}}


@pytest.fixture
def gms(gms_cp: Any) -> Iterator[GmsClient]:
    with GmsClient(gms_cp.gms_url, gms_cp.token, timeout_s=5.0) as client:
        yield client


def submit(gms: GmsClient, pool: str = "default") -> str:
    """Create an ingestion source and run it, as DataHub's UI does; the request URN."""
    source_input = {"name": f"src-{uuid.uuid4().hex[:6]}", "type": "file",
                    "config": {"recipe": json.dumps(RECIPE), "executorId": pool, "version": "bundled"}}
    source = gms.graphql(CREATE_SOURCE, {"input": source_input})["createIngestionSource"]
    answer = gms.graphql(RUN_SOURCE, {"input": {"ingestionSourceUrn": source}})
    urn: str = answer["createIngestionExecutionRequest"]
    return urn


def test_health_and_config(gms: GmsClient) -> None:
    gms.health()
    assert gms.server_config().get("noCode") == "true"


def test_lease_works_with_sqs_on_the_gateway(gms: GmsClient, gms_cp: Any) -> None:
    lease = gms.list_executor_configs("default")
    assert lease is not None and lease.pool_id == "default"
    assert lease.queue_url == gms_cp.gateway_queue_url("default")
    assert not lease.expired() and lease.refresh_at() > lease.issued_at
    urn = submit(gms)
    queue = SqsQueue(lease, connect_timeout_s=2.0, extra_read_timeout_s=5.0)
    try:
        seen: list[str] = []  # other tests' requests share the queue: take and drop them too
        deadline = time.monotonic() + 20
        while urn not in seen and time.monotonic() < deadline:
            for msg in queue.receive(10, 2, 60):
                seen.append(decode_message(msg.body).urn)
                queue.delete(msg.receipt_handle)
        assert urn in seen, "the dispatched request never arrived"
    finally:
        queue.close()


def test_unknown_pool_has_no_lease(gms: GmsClient) -> None:
    assert gms.list_executor_configs("no-such-pool") is None


def test_expired_lease_is_refused_and_a_new_one_works(gms: GmsClient, gms_cp: Any) -> None:
    old = gms.list_executor_configs("default")
    assert old is not None
    queue = SqsQueue(old, connect_timeout_s=2.0)
    try:
        queue.approximate_depth()
        gms_cp.expire_leases("default")
        with pytest.raises(LeaseExpiredError):
            queue.receive(1, 0, 30)
    finally:
        queue.close()
    fresh = gms.list_executor_configs("default")
    assert fresh is not None
    queue = SqsQueue(fresh, connect_timeout_s=2.0)
    try:
        assert queue.approximate_depth() >= 0
    finally:
        queue.close()


def test_secret_values_omit_unknown_names_and_batch(gms: GmsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gms_module, "SECRETS_PER_CALL", 10)  # three calls for 25 names
    tag = uuid.uuid4().hex[:6].upper()
    names = [f"S{tag}_{i}" for i in range(25)]
    for i, name in enumerate(names):
        gms.graphql(CREATE_SECRET, {"input": {"name": name, "value": f"value-{i}"}})
    got = gms.get_secret_values([*names, f"MISSING_{tag}"])
    assert got == {name: f"value-{i}" for i, name in enumerate(names)}
    assert gms.get_secret_values([]) == {}


def test_datahub_store_resolves_and_names_missing(gms: GmsClient) -> None:
    gms.graphql(CREATE_SECRET, {"input": {"name": "ADAPTER_DB_PASS", "value": "from-datahub"}})
    stores = [EnvStore({"ADAPTER_DB_PASS": "from-env", "ADAPTER_USER": "u"}, prefixes=("ADAPTER_",)),
              DataHubStore(gms)]
    assert resolve_secrets(["ADAPTER_DB_PASS", "ADAPTER_USER"], stores) == {
        "ADAPTER_DB_PASS": "from-datahub", "ADAPTER_USER": "u"}
    with pytest.raises(MissingSecretError) as info:
        resolve_secrets(["ADAPTER_DB_PASS", "ADAPTER_NOWHERE"], stores)
    assert info.value.names == ["ADAPTER_NOWHERE"]


def test_batch_read_of_a_submitted_request(gms: GmsClient) -> None:
    urn = submit(gms)
    missing = "urn:li:dataHubExecutionRequest:" + uuid.uuid4().hex
    names = [aspects.INPUT_ASPECT, aspects.RESULT_ASPECT, aspects.SIGNAL_ASPECT]
    found = gms.batch_get_aspects(aspects.EXECUTION_REQUEST_ENTITY, [urn, missing], names)
    assert aspects.INPUT_ASPECT in found[urn] and aspects.RESULT_ASPECT not in found[urn]
    assert found.get(missing, {}) == {}
    request = ExecutionRequest.from_aspect(urn, found[urn][aspects.INPUT_ASPECT])
    assert request.executor_id == "default" and request.source_plugin == "file"
    assert request.recipe["source"] == RECIPE["source"]
    assert gms.batch_get_aspects(aspects.EXECUTION_REQUEST_ENTITY, [], names) == {}


def test_results_are_written_and_terminal_ones_are_immutable(gms: GmsClient, gms_cp: Any) -> None:
    urn = submit(gms)
    running = aspects.result_aspect(aspects.RUNNING, 1000, 0, "starting", None, aspects.RUN_INGEST, None)
    gms.ingest_proposal(aspects.EXECUTION_REQUEST_ENTITY, urn, aspects.RESULT_ASPECT, running)
    report = '{"ok": true}'
    done = aspects.result_aspect(aspects.SUCCESS, 1000, 2000, "done", report, aspects.RUN_INGEST, None)
    gms.ingest_proposal(aspects.EXECUTION_REQUEST_ENTITY, urn, aspects.RESULT_ASPECT, done)
    assert gms_cp.get_aspect(urn, aspects.RESULT_ASPECT) == done
    found = gms.batch_get_aspects(aspects.EXECUTION_REQUEST_ENTITY, [urn], [aspects.RESULT_ASPECT])
    assert found[urn][aspects.RESULT_ASPECT]["status"] == aspects.SUCCESS
    with pytest.raises(ImmutableError):
        gms.ingest_proposal(aspects.EXECUTION_REQUEST_ENTITY, urn, aspects.RESULT_ASPECT, running)
    assert gms_cp.get_aspect(urn, aspects.RESULT_ASPECT) == done


def test_an_invalid_aspect_is_bad_input(gms: GmsClient) -> None:
    urn = submit(gms)
    with pytest.raises(BadInputError):
        gms.ingest_proposal(aspects.EXECUTION_REQUEST_ENTITY, urn, aspects.RESULT_ASPECT, {"status": 7})


def test_presence_is_accepted(gms: GmsClient, gms_cp: Any) -> None:
    key = aspects.instance_id("default", gms.url)
    urn = f"urn:li:{aspects.REMOTE_EXECUTOR_ENTITY}:{key}"
    value = aspects.presence_aspect(pool_id="default", version="0.0.0", hostname="host", uptime_s=3.0)
    gms.ingest_proposal(aspects.REMOTE_EXECUTOR_ENTITY, urn, aspects.PRESENCE_ASPECT, value)
    assert gms_cp.get_aspect(urn, aspects.PRESENCE_ASPECT) == value


def test_graphql_errors_in_a_200_raise(gms: GmsClient) -> None:
    with pytest.raises(BadInputError, match="GraphQL"):
        gms.graphql("query { noSuchField }")


def test_bad_token_is_not_allowed(gms_cp: Any) -> None:
    with GmsClient(gms_cp.gms_url, "not-the-token", timeout_s=5.0) as client:
        with pytest.raises(NotAllowedError) as info:
            client.list_executor_configs("default")
        assert "not-the-token" not in str(info.value)
        with pytest.raises(NotAllowedError):
            client.server_config()


def test_a_configured_proxy_is_used(gms_cp: Any, closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxies = {"http": f"http://127.0.0.1:{closed_port}"}
    client = GmsClient(gms_cp.gms_url, gms_cp.token, timeout_s=5.0, proxies=proxies)
    with client, pytest.raises(TransportError, match="ProxyError"):
        client.health()
