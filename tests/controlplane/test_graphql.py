"""GraphQL API of the control plane over real HTTP: DataHub's operations and input shapes."""

from __future__ import annotations

import json
from typing import Any

import requests
from datahub.emitter.serialization_helper import post_json_transform
from datahub.metadata.schema_classes import ExecutionRequestInputClass, ExecutionRequestSignalClass

from executor.datahub.envelope import decode_message
from tests.fixtures.controlplane import graphql, graphql_raw, leased_sqs

RECIPE = {"source": {"type": "file", "config": {"path": "in.json"}}, "sink": {"type": "console"}}

CREATE_SOURCE = "mutation($i: UpdateIngestionSourceInput!) { createIngestionSource(input: $i) }"
RUN = "mutation($u: String!) { createIngestionExecutionRequest(input: {ingestionSourceUrn: $u}) }"
REQUEST = """query($u: String!) { executionRequest(urn: $u) { urn id type
  input { task executorId requestedAt actorUrn source { type ingestionSource } arguments { key value } }
  result { status } source { urn name } } }"""


def make_source(cp: Any, pool: str = "default", **config: Any) -> str:
    source = {
        "name": "nightly",
        "type": "file",
        "schedule": {"interval": "0 * * * *", "timezone": "UTC"},
        "config": {"recipe": json.dumps(RECIPE), "executorId": pool, **config},
    }
    return str(graphql(cp, CREATE_SOURCE, {"i": source})["createIngestionSource"])


def test_secrets_lifecycle_and_missing_names_are_omitted(control_plane: Any) -> None:
    cp = control_plane
    urn = graphql(
        cp,
        "mutation($i: CreateSecretInput!) { createSecret(input: $i) }",
        {"i": {"name": "DB_PASSWORD", "value": "hunter2", "description": "db"}},
    )["createSecret"]
    assert urn == "urn:li:dataHubSecret:DB_PASSWORD"

    values = graphql(
        cp,
        'query { getSecretValues(input: {secrets: ["DB_PASSWORD", "MISSING"]}) { name value } }',
    )["getSecretValues"]
    assert values == [{"name": "DB_PASSWORD", "value": "hunter2"}]

    graphql(
        cp,
        "mutation($i: UpdateSecretInput!) { updateSecret(input: $i) }",
        {"i": {"urn": urn, "name": "DB_PASSWORD", "value": "changed"}},
    )
    listed = graphql(cp, "query { listSecrets(input: {start: 0, count: 10}) { total secrets { urn name } } }")
    assert listed["listSecrets"] == {"total": 1, "secrets": [{"urn": urn, "name": "DB_PASSWORD"}]}
    values = graphql(cp, 'query { getSecretValues(input: {secrets: ["DB_PASSWORD"]}) { value } }')
    assert values["getSecretValues"] == [{"value": "changed"}]

    graphql(cp, "mutation($u: String!) { deleteSecret(urn: $u) }", {"u": urn})
    assert graphql(cp, 'query { getSecretValues(input: {secrets: ["DB_PASSWORD"]}) { value } }') == {
        "getSecretValues": []
    }


def test_duplicate_secret_is_a_graphql_error(control_plane: Any) -> None:
    create = 'mutation { createSecret(input: {name: "X", value: "v"}) }'
    graphql(control_plane, create)
    answer = graphql_raw(control_plane, create)
    assert "already exists" in answer["errors"][0]["message"]


def test_ingestion_source_crud(control_plane: Any) -> None:
    cp = control_plane
    urn = make_source(cp, extraArgs=[{"key": "extra_pip_requirements", "value": "[]"}], debugMode=True)
    query = """query($u: String!) { ingestionSource(urn: $u) { urn name type schedule { interval timezone }
      config { recipe executorId debugMode version extraArgs { key value } } } }"""
    source = graphql(cp, query, {"u": urn})["ingestionSource"]
    assert source["name"] == "nightly"
    assert source["schedule"] == {"interval": "0 * * * *", "timezone": "UTC"}
    assert source["config"]["executorId"] == "default"
    assert source["config"]["debugMode"] is True
    assert source["config"]["extraArgs"] == [{"key": "extra_pip_requirements", "value": "[]"}]

    update = {
        "name": "renamed",
        "type": "file",
        "config": {"recipe": json.dumps(RECIPE), "executorId": "other"},
    }
    mutation = (
        "mutation($u: String!, $i: UpdateIngestionSourceInput!) { updateIngestionSource(urn: $u, input: $i) }"
    )
    graphql(cp, mutation, {"u": urn, "i": update})
    listed = graphql(
        cp, 'query { listIngestionSources(input: {query: "renamed"}) { total ingestionSources { urn } } }'
    )["listIngestionSources"]
    assert listed == {"total": 1, "ingestionSources": [{"urn": urn}]}

    graphql(cp, "mutation($u: String!) { deleteIngestionSource(urn: $u) }", {"u": urn})
    assert graphql(cp, query, {"u": urn})["ingestionSource"] is None


def test_execution_request_is_written_like_datahub_and_dispatched_to_the_pool(control_plane: Any) -> None:
    cp = control_plane
    source_urn = make_source(cp, version="bundled", extraArgs=[{"key": "extra_env_vars", "value": "{}"}])
    urn = graphql(cp, RUN, {"u": source_urn})["createIngestionExecutionRequest"]

    stored = cp.get_aspect(urn, "dataHubExecutionRequestInput")
    assert ExecutionRequestInputClass.from_obj(post_json_transform(stored)).validate()
    assert stored["task"] == "RUN_INGEST"
    assert stored["executorId"] == "default"
    assert stored["source"] == {"type": "MANUAL_INGESTION_SOURCE", "ingestionSource": source_urn}
    args = stored["args"]
    assert set(args) == {"recipe", "version", "debug_mode", "extra_env_vars"}
    assert (args["version"], args["debug_mode"], args["extra_env_vars"]) == ("bundled", "false", "{}")
    recipe = json.loads(args["recipe"])
    assert recipe["run_id"] == urn
    assert recipe["pipeline_name"] == source_urn
    assert recipe["source"] == RECIPE["source"]

    sqs, queue_url = leased_sqs(cp, "default")
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2)
    messages = received.get("Messages", [])
    assert [decode_message(m["Body"]).urn for m in messages] == [urn]

    other_sqs, other_url = leased_sqs(cp, "other")
    assert other_sqs.receive_message(QueueUrl=other_url, WaitTimeSeconds=0).get("Messages") is None

    shown = graphql(cp, REQUEST, {"u": urn})["executionRequest"]
    assert shown["id"] == urn.rsplit(":", 1)[1]
    assert shown["input"]["task"] == "RUN_INGEST"
    assert {"key": "debug_mode", "value": "false"} in shown["input"]["arguments"]
    assert shown["result"] is None
    assert shown["source"] == {"urn": source_urn, "name": "nightly"}


def test_pipeline_name_in_the_recipe_is_kept(control_plane: Any) -> None:
    cp = control_plane
    recipe = dict(RECIPE, pipeline_name="mine")
    source = {"name": "n", "type": "file", "config": {"recipe": json.dumps(recipe), "executorId": "default"}}
    source_urn = graphql(cp, CREATE_SOURCE, {"i": source})["createIngestionSource"]
    urn = graphql(cp, RUN, {"u": source_urn})["createIngestionExecutionRequest"]
    args = cp.get_aspect(urn, "dataHubExecutionRequestInput")["args"]
    assert json.loads(args["recipe"])["pipeline_name"] == "mine"
    assert "version" not in args


def test_cancel_writes_the_kill_signal(control_plane: Any) -> None:
    cp = control_plane
    source_urn = make_source(cp, pool="other")
    urn = graphql(cp, RUN, {"u": source_urn})["createIngestionExecutionRequest"]
    cancel = """mutation($s: String!, $u: String!) {
      cancelIngestionExecutionRequest(input: {ingestionSourceUrn: $s, executionRequestUrn: $u}) }"""
    assert graphql(cp, cancel, {"s": source_urn, "u": urn})["cancelIngestionExecutionRequest"] == urn
    signal = cp.get_aspect(urn, "dataHubExecutionRequestSignal")
    assert ExecutionRequestSignalClass.from_obj(signal).validate()
    assert signal["signal"] == "KILL"
    assert signal["executorId"] == "other"


def test_test_connection_request(control_plane: Any) -> None:
    cp = control_plane
    mutation = "mutation($i: CreateTestConnectionRequestInput!) { createTestConnectionRequest(input: $i) }"
    urn = graphql(cp, mutation, {"i": {"recipe": json.dumps(RECIPE)}})["createTestConnectionRequest"]
    stored = cp.get_aspect(urn, "dataHubExecutionRequestInput")
    assert stored["task"] == "TEST_CONNECTION"
    assert stored["executorId"] == "default"
    assert stored["source"] == {"type": "MANUAL_TEST_CONNECTION"}
    assert json.loads(stored["args"]["recipe"])["pipeline_name"] == urn

    urn2 = graphql(
        cp, mutation, {"i": {"recipe": json.dumps(RECIPE), "version": "1.2.3", "executorId": "other"}}
    )["createTestConnectionRequest"]
    stored2 = cp.get_aspect(urn2, "dataHubExecutionRequestInput")
    assert (stored2["executorId"], stored2["args"]["version"]) == ("other", "1.2.3")


def test_list_execution_requests_newest_first_and_by_source(control_plane: Any) -> None:
    cp = control_plane
    first_source, second_source = make_source(cp), make_source(cp)
    first = graphql(cp, RUN, {"u": first_source})["createIngestionExecutionRequest"]
    second = graphql(cp, RUN, {"u": second_source})["createIngestionExecutionRequest"]
    listed = graphql(
        cp,
        "query { listExecutionRequests(input: {start: 0, count: 10}) { total executionRequests { urn } } }",
    )["listExecutionRequests"]
    assert listed["total"] == 2
    assert {r["urn"] for r in listed["executionRequests"]} == {first, second}

    by_source = graphql(
        cp,
        """query($u: String!) { ingestionSource(urn: $u) { executions(start: 0, count: 5) {
          total executionRequests { urn } } } }""",
        {"u": first_source},
    )["ingestionSource"]["executions"]
    assert by_source == {"total": 1, "executionRequests": [{"urn": first}]}


def test_listing_executor_configs_narrowed_by_id(control_plane: Any) -> None:
    query = """query($i: ListExecutorConfigsInput) { listExecutorConfigs(input: $i) {
      total executorConfigs { executorId region queueUrl expiration } } }"""
    configs = graphql(control_plane, query, {"i": {"executorIds": ["other"]}})["listExecutorConfigs"]
    assert configs["total"] == 1
    (config,) = configs["executorConfigs"]
    assert config["executorId"] == "other"
    assert config["queueUrl"].startswith(control_plane.sqs_gateway + "/")
    assert config["expiration"].endswith("Z")
    assert (
        graphql(control_plane, query, {"i": {"executorIds": ["nope"]}})["listExecutorConfigs"]["total"] == 0
    )


def test_unknown_operations_and_bad_input_are_graphql_errors(control_plane: Any) -> None:
    cp = control_plane
    assert "Cannot query field" in graphql_raw(cp, "query { noSuchThing }")["errors"][0]["message"]
    bad_variables = graphql_raw(cp, RUN, {"u": 42})
    assert bad_variables["errors"] and bad_variables.get("data") is None
    missing = graphql_raw(cp, RUN, {"u": "urn:li:dataHubIngestionSource:nope"})
    assert "Failed to find ingestion source" in missing["errors"][0]["message"]
    unknown_pool = graphql_raw(
        cp,
        CREATE_SOURCE,
        {"i": {"name": "n", "type": "file", "config": {"recipe": "{}", "executorId": "nope"}}},
    )
    assert "unknown executorId" in unknown_pool["errors"][0]["message"]
    bad_recipe = graphql_raw(
        cp,
        CREATE_SOURCE,
        {"i": {"name": "n", "type": "file", "config": {"recipe": "[", "executorId": "default"}}},
    )
    assert "recipe" in bad_recipe["errors"][0]["message"]
    wrong_operation = requests.post(
        f"{cp.gms_url}/api/graphql",
        json={"query": "query A { listSecrets(input: {}) { total } }", "operationName": "B"},
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=10,
    ).json()
    assert "Unknown operation named 'B'" in wrong_operation["errors"][0]["message"]


def test_a_query_string_is_checked_once_and_its_errors_stay_the_same(control_plane: Any) -> None:
    """The parsed, validated document of a query string is kept; an invalid one's errors too."""
    from executor.local.controlplane.graphql_api import CACHED_QUERY_CHARS, document

    cp = control_plane
    listed = "query { listSecrets(input: {}) { total } }"
    assert graphql(cp, listed) == {"listSecrets": {"total": 0}}
    assert document(listed) is document(listed)
    broken = "query { listSecrets(input: {}) { total nope } }"
    first, again = graphql_raw(cp, broken), graphql_raw(cp, broken)
    assert first == again and "Cannot query field 'nope'" in first["errors"][0]["message"]
    assert graphql_raw(cp, "query { ")["errors"][0]["extensions"]["classification"] == "ValidationError"
    padded = listed[:-1] + " " * CACHED_QUERY_CHARS + "}"  # too long to keep: checked every time
    assert graphql(cp, padded) == {"listSecrets": {"total": 0}}
    assert document(padded) is not document(padded)


def test_requests_without_the_token_are_refused(control_plane: Any) -> None:
    cp = control_plane
    body = {"query": "query { listSecrets(input: {}) { total } }"}
    assert requests.post(f"{cp.gms_url}/api/graphql", json=body, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert requests.post(f"{cp.gms_url}/api/graphql", json=body, headers=wrong, timeout=10).status_code == 401
    assert requests.get(f"{cp.gms_url}/config", timeout=10).status_code == 401
    assert requests.get(f"{cp.gms_url}/health", timeout=10).status_code == 200


def test_malformed_bodies_get_clear_errors(control_plane: Any) -> None:
    cp = control_plane
    headers = {"Authorization": f"Bearer {cp.token}", "Content-Type": "application/json"}
    not_json = requests.post(f"{cp.gms_url}/api/graphql", data=b"{nope", headers=headers, timeout=10)
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["message"]
    no_query = requests.post(f"{cp.gms_url}/api/graphql", json={"q": 1}, headers=headers, timeout=10)
    assert "query" in no_query.json()["errors"][0]["message"]
