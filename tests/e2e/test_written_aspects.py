"""Every aspect the executor wrote fits DataHub's own models (and presence PROTOCOL.md's list).

The module makes a success, a failure, progress and presence records of its own, then checks
every stored version of each against ``datahub.metadata.schema_classes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.executor import ExecutorHarness, sink_recipe

pytestmark = pytest.mark.cli

PRESENCE_FIELDS: dict[str, tuple[type, ...]] = {
    "executorPoolId": (str,),
    "executorReleaseVersion": (str,),
    "executorAddress": (str,),
    "executorHostname": (str,),
    "executorUptime": (float, int),
    "executorExpired": (bool,),
    "executorStopped": (bool,),
    "executorEmbedded": (bool,),
    "executorInternal": (bool,),
    "logDeliveryEnabled": (bool,),
    "reportedAt": (int,),
    "channel": (str,),
}


def all_versions(e2e: ExecutorHarness, entity: str, aspect: str) -> list[dict[str, Any]]:
    """Every stored version of ``aspect`` on every entity of type ``entity``."""
    urns = {urn for urn, name, _ in e2e.cp.list_aspects(entity) if name == aspect}
    return [value for urn in sorted(urns) for value in e2e.cp.aspect_history(urn, aspect)]


def test_results_and_presence_validate(e2e: ExecutorHarness, tmp_path: Path) -> None:
    from datahub.metadata.schema_classes import ExecutionRequestResultClass

    _, ok = e2e.submit(sink_recipe(e2e.cp))
    _, bad = e2e.submit(sink_recipe(e2e.cp, path=tmp_path / "missing.json"))
    assert e2e.wait_terminal(ok)["status"] == "SUCCESS"
    assert e2e.wait_terminal(bad)["status"] == "FAILURE"

    results = all_versions(e2e, "dataHubExecutionRequest", "dataHubExecutionRequestResult")
    assert {"RUNNING", "SUCCESS", "FAILURE"} <= {r["status"] for r in results}
    for value in results:
        assert ExecutionRequestResultClass.from_obj(value).validate(), value["status"]
    for urn in (ok, bad):
        statuses = [v["status"] for v in e2e.cp.aspect_history(urn, "dataHubExecutionRequestResult")]
        assert statuses[0] == "RUNNING" and statuses[-1] in ("SUCCESS", "FAILURE")
        assert "RUNNING" not in statuses[statuses.index(statuses[-1]) :]  # never RUNNING after the end

    presence = all_versions(e2e, "dataHubRemoteExecutor", "dataHubRemoteExecutorStatus")
    assert {p["executorPoolId"] for p in presence} == {"default", "other"}
    for value in presence:
        assert set(value) <= set(PRESENCE_FIELDS), set(value) - set(PRESENCE_FIELDS)
        assert {"executorPoolId", "reportedAt"} <= set(value)
        for key, item in value.items():
            assert isinstance(item, PRESENCE_FIELDS[key]), (key, item)
        assert value["channel"] == "SQS"
        assert value["executorStopped"] is False  # the service is still running
