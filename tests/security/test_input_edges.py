"""Input edge cases end as a FAILURE result that says why, never as a crash (issue 10 point 9).

One reader of memory sizes (``executor.sizes``) with DataHub's meaning (a plain byte count, as
DataHub's executor reads ``EXECUTOR_TASK_MEMORY_LIMIT``) and Kubernetes' suffixes, used by both
the request parser and the sandbox limits. Nonsense (400 nines, a sign, garbage) is a
``BadInputError`` naming the setting; a real executor turns it, and an input aspect that is a
list rather than an object, into a FAILURE result with the reason, and deletes the message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.datahub.aspects import ExecutionRequest, parse_memory
from executor.errors import BadInputError
from executor.local.controlplane.server import ControlPlane
from executor.sandbox.limits import SandboxLimits, parse_size
from executor.sizes import MAX_BYTES
from tests.faults.harness import moto_client
from tests.fixtures.executor import running_executor

VAR = "EXECUTOR_TASK_MEMORY_LIMIT"
URN = "urn:li:dataHubExecutionRequest:edge-"


@pytest.mark.parametrize(("text", "expected"), [
    ("1073741824", 1073741824), (" 2147483648 ", 2 * 1024**3), ("512M", 512_000_000),
    ("512Mi", 512 * 1024**2), ("2G", 2_000_000_000), ("2Gi", 2 * 1024**3), ("1.5Gi", 1536 * 1024**2),
    ("64MB", 64_000_000), ("2GiB", 2 * 1024**3),
])
def test_both_parsers_agree_on_datahub_bytes_and_kubernetes_suffixes(text: str, expected: int) -> None:
    assert parse_memory(text) == expected
    assert parse_size(text, VAR) == expected


@pytest.mark.parametrize("text", [
    "9" * 400, "9" * 40 + "Ei", "-5", "+5", "0", "0.4", "1.5", "lots", "1e9", "nan", "inf", "2 Gigs",
    "1Xi", "", "   ", "1_000", "\x00", "9" * 5000,
])
def test_nonsense_is_a_bad_input_naming_the_setting(text: str) -> None:
    for parse in (parse_memory, lambda t: parse_size(t, VAR)):
        with pytest.raises(BadInputError, match=VAR):
            parse(text)


def test_the_largest_size_is_one_exbibyte() -> None:
    assert parse_memory(str(MAX_BYTES)) == MAX_BYTES
    with pytest.raises(BadInputError, match="larger than"):
        parse_memory(str(MAX_BYTES + 1))


def test_sandbox_limits_use_the_same_parser() -> None:
    limits = SandboxLimits(memory_bytes=4 * 1024**3)
    assert limits.with_task_overrides({VAR: "512M"}).memory_bytes == 512_000_000
    with pytest.raises(BadInputError, match=VAR):
        limits.with_task_overrides({VAR: "9" * 400})


@pytest.mark.parametrize("value", [[{"task": "RUN_INGEST"}], "RUN_INGEST", 42, True])
def test_an_input_that_is_not_an_object_is_refused_with_the_reason(value: object) -> None:
    with pytest.raises(BadInputError, match="not a JSON object"):
        ExecutionRequest.from_aspect(URN + "x", value)


def _input(memory_limit: str) -> dict[str, Any]:
    recipe = {"source": {"type": "file", "config": {"path": "/nonexistent"}}, "sink": {"type": "console"}}
    return {
        "task": "RUN_INGEST",
        "args": {"recipe": json.dumps(recipe), "version": "bundled",
                 "extra_env_vars": json.dumps({VAR: memory_limit})},
        "executorId": "default",
        "source": {"type": "MANUAL_INGESTION_SOURCE"},
        "requestedAt": 1_700_000_000_000,
    }


def test_a_real_executor_fails_such_requests_with_the_reason(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cases = {
        URN + "list": ([{"task": "RUN_INGEST"}], "is not a JSON object"),
        URN + "nines": (_input("9" * 400), VAR),
        URN + "negative": (_input("-1"), VAR),
        URN + "garbage": (_input("a lot"), VAR),
    }
    # No recipe runs here, so no venv is needed.
    with running_executor(control_plane, tmp_path / "state", tmp_path / "no-venvs") as executor:
        for urn, (value, _) in cases.items():
            control_plane.plant_request("default", urn, value)
        for urn, (_, says) in cases.items():
            assert executor.wait_delivered(urn, timeout_s=60) == "FAILURE"
            result = executor.result(urn)
            assert result is not None and result["status"] == "FAILURE"
            assert "Invalid execution request" in result["report"] and says in result["report"], result
        assert "OverflowError" not in executor.logs.text()
    client = moto_client(control_plane)
    try:
        for url in (control_plane.queue_url("default"), control_plane.dlq_url("default")):
            attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            counts = attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]
            assert counts == ("0", "0"), url
    finally:
        client.close()
