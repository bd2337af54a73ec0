"""Pool policies end to end: two pools in one process, capacity, cancellation, locked venvs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.executor import ExecutorHarness, sink_recipe
from tests.fixtures.silent import SilentServer
from tests.fixtures.spares import assert_no_work_dir_left

from .direct import queue_depth, send_envelope
from .sampling import ProcessSampler

pytestmark = pytest.mark.cli


def test_two_pools_in_one_process_each_run_their_own(e2e: ExecutorHarness) -> None:
    _, in_default = e2e.submit(sink_recipe(e2e.cp), pool="default")
    _, in_other = e2e.submit(sink_recipe(e2e.cp), pool="other")
    assert e2e.wait_terminal(in_default)["status"] == "SUCCESS"
    assert e2e.wait_terminal(in_other)["status"] == "SUCCESS"

    assert e2e.task_log(in_default, "default").is_file()
    assert not e2e.task_log(in_default, "other").exists()
    assert e2e.task_log(in_other, "other").is_file()
    assert not e2e.task_log(in_other, "default").exists()
    for urn, pool, stranger in ((in_default, "default", "other"), (in_other, "other", "default")):
        records = e2e.logs.for_request(urn)
        assert any("finished: SUCCESS" in r for r in records)
        assert all(f"'pool': '{pool}'" in r for r in records if "'pool'" in r)
        assert not any(f"'pool': '{stranger}'" in r for r in records)


@pytest.mark.slow
def test_a_burst_never_exceeds_the_pools_capacity(e2e: ExecutorHarness) -> None:
    heavy_env = {"extra_env_vars": json.dumps({"EXECUTOR_TASK_WEIGHT": "1.0"})}
    sources = [e2e.create_source(sink_recipe(e2e.cp), name=f"burst {i}") for i in range(5)]
    sources.insert(1, e2e.create_source(sink_recipe(e2e.cp), name="heavy", extra_args=heavy_env))
    with ProcessSampler(e2e.logs.text) as sampler:
        requests = [e2e.run_source(source) for source in sources]
        statuses = [e2e.wait_terminal(urn, timeout_s=240)["status"] for urn in requests]
    assert statuses == ["SUCCESS"] * 6
    assert sampler.ingest_runs_seen() == 6
    assert sampler.max_ingest_runs == 2  # pool "default" has max_workers 2, and the burst filled it
    heavy = requests[1].rsplit(":", 1)[-1]
    assert {heavy} in sampler.together  # it ran...
    assert not [s for s in sampler.together if heavy in s and len(s) > 1]  # ...alone: weight 1.0


def test_cancelling_a_running_ingest_stops_its_whole_tree(e2e: ExecutorHarness) -> None:
    with SilentServer() as nowhere, ProcessSampler(e2e.logs.text) as sampler:
        recipe = sink_recipe(e2e.cp)
        recipe["sink"]["config"]["server"] = nowhere.url  # the CLI waits for an answer that never comes
        source, urn = e2e.submit(recipe)
        sampler.wait_until(lambda _: nowhere.connections > 0)  # the CLI is inside its run
        assert sampler.ingest_runs_now == 1
        send_envelope(e2e.cp, urn)  # a duplicate message for the running request: deleted, not run
        sampler.wait_until(lambda _: queue_depth(e2e.cp) == 1)  # only the running one's, in flight
        e2e.cancel(source, urn)
        result = e2e.wait_terminal(urn, timeout_s=90)  # signal poll (1 s) + kill grace (5 s), generously
        survivors = [p for p in sampler.processes() if p.still_running()]
    assert result["status"] == "CANCELLED", result["report"]
    assert e2e.delivered[urn] == "CANCELLED"
    assert "KILL" in result["report"]
    assert sampler.processes() and survivors == []  # the CLI and whatever it started are gone
    assert sampler.ingest_runs_seen() == 1
    sampler.wait_until(lambda _: queue_depth(e2e.cp) == 0)  # settled once GMS had the result
    assert_no_work_dir_left(e2e.pool_dir() / "work", e2e.service.pools)  # the private work dir is gone


def test_a_heavy_request_waits_for_room_and_a_kill_ends_the_wait(e2e: ExecutorHarness) -> None:
    heavy_env = {"extra_env_vars": json.dumps({"EXECUTOR_TASK_WEIGHT": "1.0"})}
    with SilentServer() as nowhere, ProcessSampler(e2e.logs.text) as sampler:
        recipe = sink_recipe(e2e.cp)
        recipe["sink"]["config"]["server"] = nowhere.url
        running_source, running = e2e.submit(recipe)
        sampler.wait_until(lambda _: nowhere.connections > 0)
        heavy_source, heavy = e2e.submit(sink_recipe(e2e.cp), extra_args=heavy_env)
        e2e.logs.wait_for(lambda text: "waiting for capacity" in text and heavy.rsplit(":", 1)[-1] in text)
        e2e.cancel(heavy_source, heavy)
        waited = e2e.wait_terminal(heavy, timeout_s=60)
        assert e2e.result(running)["status"] == "RUNNING"  # the other one runs on meanwhile
        e2e.cancel(running_source, running)
        assert e2e.wait_terminal(running, timeout_s=90)["status"] == "CANCELLED"
    assert waited["status"] == "CANCELLED"
    assert "before it started" in waited["report"]
    assert sampler.ingest_runs_seen() == 1  # the heavy one never ran


def test_locked_mode_refuses_a_pinned_version_without_pip(e2e: ExecutorHarness) -> None:
    with ProcessSampler(e2e.logs.text) as sampler:
        _, urn = e2e.submit(sink_recipe(e2e.cp), version="1.7.0.17")
        result = e2e.wait_terminal(urn)
    assert result["status"] == "FAILURE"
    assert "version '1.7.0.17' is not allowed" in result["report"]
    assert "INGESTION_DEPENDENCY_RESOLUTION_ENABLED=false" in result["report"]
    assert sampler.ingest_runs_seen() == 0
    assert not [c for c in sampler.commands() if any(Path(arg).name.startswith("pip") for arg in c)]
    assert not (e2e.pool_dir() / "venvs").exists()
