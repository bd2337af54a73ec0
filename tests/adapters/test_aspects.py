"""Execution-request aspects: parsing the input, building result and presence, DataHub's own models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from datahub.emitter.serialization_helper import post_json_transform
from datahub.metadata.schema_classes import (
    ExecutionRequestInputClass,
    ExecutionRequestResultClass,
    ExecutionRequestSignalClass,
)

from executor.datahub import aspects
from executor.datahub.aspects import ExecutionRequest, parse_memory
from executor.errors import BadInputError

URN = "urn:li:dataHubExecutionRequest:abc-123"
RECIPE = {"source": {"type": "file", "config": {"path": "${INPUT_PATH}"}}, "sink": {"type": "console"}}


def input_aspect(**args: str) -> dict[str, Any]:
    base = {"recipe": json.dumps(RECIPE), "version": "bundled", "debug_mode": "false"}
    return {
        "task": "RUN_INGEST",
        "args": {**base, **args},
        "executorId": "default",
        "source": {"type": "MANUAL_INGESTION_SOURCE", "ingestionSource": "urn:li:dataHubIngestionSource:s1"},
        "requestedAt": 1_700_000_000_000,
        "actorUrn": "urn:li:corpuser:datahub",
    }


def test_parses_a_full_input() -> None:
    req = ExecutionRequest.from_aspect(URN, input_aspect(
        debug_mode="true",
        extra_env_vars=json.dumps(
            {"EXECUTOR_TASK_WEIGHT": "0.5", "EXECUTOR_TASK_MEMORY_LIMIT": "2Gi", "N": 3}
        ),
        extra_pip_requirements='["pandas<3"]',
        extra_pip_plugins='["s3"]',
    ))
    assert (req.id, req.task, req.executor_id) == ("abc-123", "RUN_INGEST", "default")
    assert req.source_type == "MANUAL_INGESTION_SOURCE"
    assert req.ingestion_source == "urn:li:dataHubIngestionSource:s1"
    assert req.requested_at_ms == 1_700_000_000_000 and req.actor_urn == "urn:li:corpuser:datahub"
    assert req.recipe == RECIPE and req.source_plugin == "file" and req.version == "bundled"
    assert req.debug_mode is True
    assert req.extra_env_vars["N"] == "3"
    assert req.extra_pip_requirements == ["pandas<3"] and req.extra_pip_plugins == ["s3"]
    assert req.task_weight(4) == 0.5
    assert req.memory_limit_bytes() == 2 * 1024**3


def test_defaults_for_a_minimal_input() -> None:
    req = ExecutionRequest.from_aspect(URN, {"task": "TEST_CONNECTION", "args": {}, "executorId": "default",
                                             "source": {"type": "MANUAL"}, "requestedAt": 1})
    assert req.recipe == {} and req.recipe_text == "" and req.source_plugin is None
    assert req.version is None and req.debug_mode is False and req.extra_env_vars == {}
    assert req.extra_pip_requirements == [] and req.memory_limit_bytes() is None
    assert req.task_weight(4) == 0.25 and req.ingestion_source is None


def test_repr_hides_recipe_args_and_env() -> None:
    req = ExecutionRequest.from_aspect(URN, input_aspect(
        recipe=json.dumps({"source": {"type": "x", "config": {"password": "pa55word"}}}),
        extra_env_vars='{"TOKEN": "t0ken"}',
    ))
    assert "pa55word" not in repr(req) and "t0ken" not in repr(req)


@pytest.mark.parametrize(
    ("weight", "workers", "expected"),
    [("0.5", 4, 0.5), ("2", 4, 1.0), ("0", 4, 0.25), ("-1", 2, 0.5), ("1", 1, 1.0)],
)
def test_task_weight_is_clamped(weight: str, workers: int, expected: float) -> None:
    env = json.dumps({"EXECUTOR_TASK_WEIGHT": weight})
    req = ExecutionRequest.from_aspect(URN, input_aspect(extra_env_vars=env))
    assert req.task_weight(workers) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1073741824", 1073741824), ("2Gi", 2 * 1024**3), ("512M", 512_000_000), ("512Mi", 512 * 1024**2),
     ("1.5Gi", int(1.5 * 1024**3)), ("100k", 100_000), ("64MB", 64_000_000), (" 3G ", 3_000_000_000)],
)
def test_memory_sizes(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "2 Gigs", "-5", "0", "1Xi", ""])
def test_bad_memory_sizes(text: str) -> None:
    with pytest.raises(BadInputError, match="EXECUTOR_TASK_MEMORY_LIMIT"):
        parse_memory(text)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (None, "no dataHubExecutionRequestInput"),
        ([], "not a JSON object"),
        ({**input_aspect(), "task": ""}, "task"),
        ({**input_aspect(), "args": {"recipe": 5}}, "not strings"),
        (input_aspect(recipe="{not json"), "args.recipe is not valid JSON"),
        (input_aspect(recipe="[1, 2]"), "args.recipe is not a JSON object"),
        (input_aspect(extra_env_vars="[1]"), "extra_env_vars is not a JSON object"),
        (input_aspect(extra_env_vars='{"A": {"b": 1}}'), "not a scalar"),
        (input_aspect(extra_pip_requirements='"pandas"'), "extra_pip_requirements"),
        (input_aspect(extra_env_vars='{"EXECUTOR_TASK_WEIGHT": "heavy"}'), "EXECUTOR_TASK_WEIGHT"),
        (input_aspect(extra_env_vars='{"EXECUTOR_TASK_MEMORY_LIMIT": "lots"}'), "EXECUTOR_TASK_MEMORY_LIMIT"),
        ({**input_aspect(), "requestedAt": "yesterday"}, "requestedAt"),
        ({**input_aspect(), "source": "manual"}, "source"),
    ],
)
def test_malformed_input_is_a_clear_bad_input(value: object, says: str) -> None:
    with pytest.raises(BadInputError, match=says):
        ExecutionRequest.from_aspect(URN, value)


def test_urn_must_be_an_execution_request() -> None:
    with pytest.raises(BadInputError):
        ExecutionRequest.from_aspect("urn:li:corpuser:x", input_aspect())


def test_input_round_trips_through_datahub_models() -> None:
    value = input_aspect(extra_env_vars='{"A": "1"}')
    model = ExecutionRequestInputClass.from_obj(post_json_transform(value))
    assert model.validate()
    again = ExecutionRequest.from_aspect(URN, model.to_obj())
    assert again == ExecutionRequest.from_aspect(URN, value)


def _validate_result(value: dict[str, Any]) -> None:
    model = ExecutionRequestResultClass.from_obj(post_json_transform(value))
    assert model.validate()
    known = {f.name for f in ExecutionRequestResultClass.RECORD_SCHEMA.fields}
    assert set(value) <= known, "an open-source GMS refuses unknown fields"


def test_result_fits_datahub_model() -> None:
    structured = json.dumps({"source": {"report": {}}, "sink": {}})
    value = aspects.result_aspect(aspects.SUCCESS, 1000, 2500, "done\n", structured, "RUN_INGEST", None)
    _validate_result(value)
    assert value["structuredReport"] == {"type": "RUN_INGEST", "serializedValue": structured,
                                         "contentType": "application/json"}
    running = aspects.result_aspect(aspects.RUNNING, 1000, 0, "", None, "RUN_INGEST", None)
    _validate_result(running)
    assert "structuredReport" not in running


def test_executor_instance_id_only_when_given() -> None:
    value = aspects.result_aspect(aspects.FAILURE, 1, 2, "x", None, "RUN_INGEST", "inst-1")
    assert value["executorInstanceId"] == "inst-1"
    with pytest.raises(ValueError):
        aspects.result_aspect("DONE", 1, 2, "x", None, "RUN_INGEST", None)


def test_report_tail_is_capped_to_2000_lines_of_4k() -> None:
    lines = [f"line {i}" for i in range(5000)] + ["x" * 10_000]
    value = aspects.result_aspect(aspects.FAILURE, 1, 2, "\n".join(lines), None, "RUN_INGEST", None)
    out = value["report"].split("\n")
    assert len(out) == aspects.MAX_REPORT_LINES
    assert out[0].startswith("[3002 earlier log lines truncated")
    assert out[-2] == "line 4999"
    assert len(out[-1]) == aspects.MAX_LINE_CHARS and out[-1].endswith("[line truncated]")


def test_structured_report_is_dropped_first_when_too_big(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aspects, "MAX_PAYLOAD_CHARS", 1000)
    structured = json.dumps({"k": "v" * 950})
    value = aspects.result_aspect(aspects.SUCCESS, 1, 2, "r" * 100, structured, "RUN_INGEST", None)
    assert "structuredReport" not in value
    assert value["report"].startswith("WARNING:") and value["report"].endswith("r" * 100)
    _validate_result(value)
    long_report = "\n".join(["y" * 100] * 30)
    value = aspects.result_aspect(aspects.FAILURE, 1, 2, long_report, None, "RUN_INGEST", None)
    assert len(value["report"]) == 1000 and value["report"].startswith("WARNING:")


def test_signal_parsing_and_datahub_model() -> None:
    signal = {"signal": "KILL", "executorId": "default",
              "createdAt": {"time": 1, "actor": "urn:li:corpuser:datahub"}}
    assert ExecutionRequestSignalClass.from_obj(signal).validate()
    assert aspects.signal_from_aspect(signal) == aspects.KILL
    assert aspects.signal_from_aspect({"signal": " kill "}) == "KILL"
    assert aspects.signal_from_aspect(None) is None
    assert aspects.signal_from_aspect({"signal": 3}) is None
    assert aspects.signal_from_aspect("KILL") is None


def test_presence_aspect_fields() -> None:
    value = aspects.presence_aspect(pool_id="default", version="0.1.0", hostname="h", uptime_s=12.5,
                                    stopped=True, address="10.0.0.7", reported_at_s=1_700_000_000)
    assert value == {
        "executorPoolId": "default", "executorReleaseVersion": "0.1.0", "executorAddress": "10.0.0.7",
        "executorHostname": "h", "executorUptime": 12.5, "executorExpired": False, "executorStopped": True,
        "executorEmbedded": False, "executorInternal": False, "logDeliveryEnabled": False,
        "reportedAt": 1_700_000_000, "channel": "SQS",
    }
    now = aspects.presence_aspect(pool_id="p", version="v", hostname="h", uptime_s=0)
    assert isinstance(now["reportedAt"], int)


def test_instance_id_shape() -> None:
    value = aspects.instance_id("default", "https://acme.acryl.io/gms", "abcd1234", address="10.0.0.7")
    digest, rest = value.split("-", 1)
    assert len(digest) == 8 and rest == "abcd1234.default.acme.acryl.io"
    random_tail = aspects.instance_id("p", "gms.local:8080").split("-", 1)[1].split(".", 1)[0]
    assert len(random_tail) == 8 and random_tail.isalnum() and random_tail.lower() == random_tail
    assert aspects.instance_id("p", "h", "x", "1.2.3.4") == aspects.instance_id("p", "h", "x", "1.2.3.4")


def test_status_sets() -> None:
    assert aspects.IMMUTABLE < aspects.TERMINAL
    assert aspects.RUNNING not in aspects.TERMINAL and aspects.FAILURE not in aspects.IMMUTABLE
    assert aspects.is_terminal({"status": "TIMEOUT"}) and not aspects.is_terminal({"status": "RUNNING"})
