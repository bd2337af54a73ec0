"""ObservabilityServer over real HTTP on loopback: each endpoint, its 200 and 503 paths, its body."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest

from executor.errors import ConfigError
from executor.observability import HealthState, Metrics, ObservabilityServer
from tests.ops.http import get
from tests.ops.probes import FakeClock, Turn


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def health() -> HealthState:
    return HealthState()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def server(health: HealthState, metrics: Metrics) -> Iterator[ObservabilityServer]:
    srv = ObservabilityServer("127.0.0.1", 0, health, metrics, poll_interval_s=0.02)
    srv.start()
    yield srv
    srv.stop()
    assert not any(t.name == "observability-http" for t in threading.enumerate())


def url(server: ObservabilityServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_ephemeral_port_is_reported(server: ObservabilityServer) -> None:
    assert server.port > 0


def test_healthz_200_while_every_component_is_live(server: ObservabilityServer, health: HealthState) -> None:
    health.watch("root/pool:a/poller", lambda: (0.0, 2.0))
    answer = get(url(server, "/healthz"))
    assert answer.status == 200
    assert answer.content_type == "application/json"
    body = answer.json()
    assert body["status"] == "ok"
    assert body["components"]["root/pool:a/poller"]["ok"] is True


def test_healthz_503_names_the_stale_component(
    server: ObservabilityServer, health: HealthState, clock: FakeClock
) -> None:
    health.watch("root/pool:a/poller", Turn(clock, 2.0))
    health.watch("root/pool:a/leaser", Turn(clock, 30.0))
    clock.now += 10
    answer = get(url(server, "/healthz"))
    assert answer.status == 503
    body = answer.json()
    assert body["status"] == "fail"
    assert body["stale"] == ["root/pool:a/poller"]
    assert body["components"]["root/pool:a/poller"]["age_s"] == 10.0


def test_readyz_503_without_pools(server: ObservabilityServer) -> None:
    answer = get(url(server, "/readyz"))
    assert answer.status == 503
    assert answer.json()["reasons"] == ["no pool registered yet"]


def test_readyz_503_says_which_pool_and_why(server: ObservabilityServer, health: HealthState) -> None:
    health.set_ready("default", True, "")
    health.set_ready("emea", False, "no lease yet: GMS answered 401")
    answer = get(url(server, "/readyz"))
    assert answer.status == 503
    body = answer.json()
    assert body["status"] == "not ready"
    assert body["pools"]["emea"] == {"ready": False, "reason": "no lease yet: GMS answered 401"}
    assert body["reasons"] == ["pool emea: no lease yet: GMS answered 401"]


def test_readyz_200_when_every_pool_is_ready(server: ObservabilityServer, health: HealthState) -> None:
    health.set_ready("default", True, "")
    answer = get(url(server, "/readyz"))
    assert answer.status == 200
    assert answer.json() == {"pools": {"default": {"ready": True, "reason": ""}}, "status": "ready"}


def test_metrics_in_prometheus_text(server: ObservabilityServer, metrics: Metrics) -> None:
    metrics.count_task("default", "SUCCESS")
    answer = get(url(server, "/metrics"))
    assert answer.status == 200
    assert answer.content_type.startswith("text/plain")
    assert 'remote_executor_tasks_total{pool="default",status="SUCCESS"} 1.0' in answer.text


def test_head_has_status_without_body(server: ObservabilityServer) -> None:
    answer = get(url(server, "/readyz"), method="HEAD")
    assert answer.status == 503
    assert answer.body == b""


def test_query_and_trailing_slash_are_ignored(server: ObservabilityServer) -> None:
    assert get(url(server, "/healthz/?verbose=1")).status == 200


def test_unknown_path_is_404_and_lists_endpoints(server: ObservabilityServer) -> None:
    answer = get(url(server, "/admin"))
    assert answer.status == 404
    assert answer.json()["endpoints"] == ["/healthz", "/readyz", "/metrics"]


def test_other_methods_are_refused(server: ObservabilityServer) -> None:
    assert get(url(server, "/healthz"), method="POST").status == 501


def test_metrics_404_when_disabled(health: HealthState) -> None:
    srv = ObservabilityServer("127.0.0.1", 0, health, None, poll_interval_s=0.02)
    srv.start()
    try:
        assert get(url(srv, "/metrics")).status == 404
        assert get(url(srv, "/healthz")).status == 200
    finally:
        srv.stop()


def test_a_failing_health_source_answers_500_and_keeps_serving(server: ObservabilityServer) -> None:
    class Broken(HealthState):
        def liveness(self) -> tuple[bool, dict[str, object]]:
            raise RuntimeError("boom")

    server.health.__class__ = Broken
    answer = get(url(server, "/healthz"))
    assert answer.status == 500
    assert answer.json() == {"status": "error"}
    assert get(url(server, "/readyz")).status == 503


def test_busy_port_is_a_clear_config_error(health: HealthState) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = ObservabilityServer("127.0.0.1", port, health, None)
        with pytest.raises(ConfigError, match=re.escape(f"cannot listen on 127.0.0.1:{port}")):
            srv.start()
        srv.stop()


def test_port_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("observability.port")):
        ObservabilityServer("127.0.0.1", 70000, HealthState(), None)


def test_start_twice_is_an_error_and_stop_twice_is_fine(health: HealthState) -> None:
    srv = ObservabilityServer("127.0.0.1", 0, health, None, poll_interval_s=0.02)
    srv.start()
    try:
        with pytest.raises(RuntimeError):
            srv.start()
    finally:
        srv.stop()
        srv.stop()


def test_ipv6_loopback_when_available(health: HealthState) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    srv = ObservabilityServer("::1", 0, health, None, poll_interval_s=0.02)
    srv.start()
    try:
        assert get(f"http://[::1]:{srv.port}/healthz").status == 200
    finally:
        srv.stop()


def test_stop_does_not_wait_for_the_long_poll_interval(health: HealthState, metrics: Metrics) -> None:
    """The serving loop sleeps 30 s between looks when no probe comes (idle CPU); ``stop()``
    wakes it with a connection of its own, so it ends well within a timeout shorter than that."""
    srv = ObservabilityServer("127.0.0.1", 0, health, metrics)
    srv.start()
    assert get(url(srv, "/healthz")).status == 200
    srv.stop(timeout_s=10.0)
    assert not any(t.name == "observability-http" for t in threading.enumerate())
