"""Metrics: every metric is exposed, parsed back with prometheus-client's own text parser."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from executor import __version__
from executor.observability import HealthState, Metrics, ObservabilityServer
from tests.ops.http import get

EXPECTED = {
    "remote_executor_build_info": "gauge",
    "remote_executor_tasks": "counter",
    "remote_executor_task_duration_seconds": "histogram",
    "remote_executor_task_pickup_latency_seconds": "histogram",
    "remote_executor_busy_slots": "gauge",
    "remote_executor_capacity_slots": "gauge",
    "remote_executor_actor_restarts": "counter",
    "remote_executor_lease_seconds_left": "gauge",
    "remote_executor_outbox_depth": "gauge",
    "remote_executor_queue_depth_approximate": "gauge",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as ``(name, sorted labels) -> value``."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics()
    server = ObservabilityServer("127.0.0.1", 0, HealthState(), metrics, poll_interval_s=0.02)
    server.start()
    yield metrics, f"http://127.0.0.1:{server.port}/metrics"
    server.stop()


def test_every_metric_is_declared_even_before_any_update(served: tuple[Metrics, str]) -> None:
    _, url = served
    families = {f.name: f.type for f in text_string_to_metric_families(get(url).text)}
    for name, kind in EXPECTED.items():
        assert families.get(name) == kind, name


def test_every_update_method_shows_in_the_endpoint(served: tuple[Metrics, str]) -> None:
    metrics, url = served
    metrics.count_task("default", "SUCCESS")
    metrics.count_task("default", "failure")
    metrics.count_task("default", "FAILURE")
    metrics.observe_duration("default", 42.0)
    metrics.observe_pickup("default", 3.5)
    metrics.set_busy_slots("default", 2)
    metrics.set_capacity("default", 4)
    metrics.count_restart("root/pool:default/poller")
    metrics.set_lease_expiry("default", time.time() + 2700.0)
    metrics.watch_outbox("default", lambda: 3)
    metrics.set_queue_depth("default", 17)
    got = samples(get(url).text)
    pool = (("pool", "default"),)
    assert got[("remote_executor_build_info", (("version", __version__),))] == 1
    assert got[("remote_executor_tasks_total", (("pool", "default"), ("status", "SUCCESS")))] == 1
    assert got[("remote_executor_tasks_total", (("pool", "default"), ("status", "FAILURE")))] == 2
    assert got[("remote_executor_task_duration_seconds_sum", pool)] == 42.0
    assert got[("remote_executor_task_duration_seconds_bucket", (("le", "60.0"), ("pool", "default")))] == 1
    assert got[("remote_executor_task_duration_seconds_bucket", (("le", "30.0"), ("pool", "default")))] == 0
    assert got[("remote_executor_task_pickup_latency_seconds_count", pool)] == 1
    assert got[("remote_executor_task_pickup_latency_seconds_sum", pool)] == 3.5
    assert got[("remote_executor_busy_slots", pool)] == 2
    assert got[("remote_executor_capacity_slots", pool)] == 4
    assert got[("remote_executor_actor_restarts_total", (("actor", "root/pool:default/poller"),))] == 1
    assert 2600 < got[("remote_executor_lease_seconds_left", pool)] <= 2700
    assert got[("remote_executor_outbox_depth", pool)] == 3
    assert got[("remote_executor_queue_depth_approximate", pool)] == 17


def test_lease_and_outbox_gauges_are_worked_out_at_each_scrape() -> None:
    """Nothing wakes to refresh them: the lease's seconds left follow the clock, the outbox's
    depth what is in it now, and a depth that cannot be read shows NaN, not a failed scrape."""
    metrics = Metrics()
    depth = [2]

    def read_depth() -> int:
        if depth[0] < 0:
            raise PermissionError("the state dir went away")
        return depth[0]

    metrics.set_lease_expiry("p", time.time() - 30.0)  # expired half a minute ago
    metrics.watch_outbox("p", read_depth)
    got = samples(metrics.render().decode())
    assert -40 < got[("remote_executor_lease_seconds_left", (("pool", "p"),))] <= -30
    assert got[("remote_executor_outbox_depth", (("pool", "p"),))] == 2
    metrics.set_lease_expiry("p", time.time() + 3600.0)  # a renewal moves the same series
    depth[0] = 5
    got = samples(metrics.render().decode())
    assert 3500 < got[("remote_executor_lease_seconds_left", (("pool", "p"),))] <= 3600
    assert got[("remote_executor_outbox_depth", (("pool", "p"),))] == 5
    depth[0] = -1
    assert math.isnan(samples(metrics.render().decode())[("remote_executor_outbox_depth", (("pool", "p"),))])


def test_init_pool_starts_series_at_zero() -> None:
    metrics = Metrics()
    metrics.init_pool("emea", 8)
    got = samples(metrics.render().decode())
    assert got[("remote_executor_capacity_slots", (("pool", "emea"),))] == 8
    assert got[("remote_executor_busy_slots", (("pool", "emea"),))] == 0
    assert got[("remote_executor_outbox_depth", (("pool", "emea"),))] == 0
    assert got[("remote_executor_tasks_total", (("pool", "emea"), ("status", "SUCCESS")))] == 0
    assert got[("remote_executor_task_duration_seconds_count", (("pool", "emea"),))] == 0


def test_unknown_statuses_fold_into_other_and_negative_times_into_zero() -> None:
    metrics = Metrics()
    metrics.count_task("p", "whatever-a-bug-sends")
    metrics.observe_pickup("p", -5.0)
    metrics.observe_duration("p", -1.0)
    got = samples(metrics.render().decode())
    assert got[("remote_executor_tasks_total", (("pool", "p"), ("status", "OTHER")))] == 1
    assert got[("remote_executor_task_pickup_latency_seconds_sum", (("pool", "p"),))] == 0
    assert got[("remote_executor_task_duration_seconds_sum", (("pool", "p"),))] == 0


def test_two_instances_do_not_share_state() -> None:
    first, second = Metrics(), Metrics()
    first.count_task("p", "SUCCESS")
    assert ("remote_executor_tasks_total", (("pool", "p"), ("status", "SUCCESS"))) in samples(
        first.render().decode()
    )
    assert ("remote_executor_tasks_total", (("pool", "p"), ("status", "SUCCESS"))) not in samples(
        second.render().decode()
    )


def test_operations_guide_lists_every_metric() -> None:
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for family in Metrics().registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"`{name}`" in guide, name
