"""The executor's own lifecycle around the task path: what it tells DataHub when it stops."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.executor import ExecutorHarness

from .test_written_aspects import PRESENCE_FIELDS

pytestmark = pytest.mark.cli


def presence_records(harness: ExecutorHarness) -> list[dict[str, object]]:
    """Every stored presence record, oldest first per instance."""
    cp = harness.cp
    return [
        value
        for urn, name, _ in cp.list_aspects("dataHubRemoteExecutor")
        for value in cp.aspect_history(urn, name)
    ]


def test_the_last_presence_record_says_stopped(executor_service: ExecutorHarness) -> None:
    deadline = time.monotonic() + 30
    while not presence_records(executor_service):
        assert time.monotonic() < deadline, "no presence record was written"
        time.sleep(0.1)
    assert presence_records(executor_service)[0]["executorStopped"] is False

    executor_service.stop()  # drains, writes the last presence, stops; nothing may be left

    records = presence_records(executor_service)
    assert records[-1]["executorStopped"] is True
    assert {r["executorPoolId"] for r in records} == {"default"}
    assert all(set(r) <= set(PRESENCE_FIELDS) for r in records)
