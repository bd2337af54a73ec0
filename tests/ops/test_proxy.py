"""GMS and SQS traffic through a proxy: the test proxy itself, the clients, and a whole task.

requests and botocore both apply ``HTTP(S)_PROXY`` to loopback hosts too unless ``NO_PROXY``
names them; a configured ``proxy:`` section replaces the environment (its ``no_proxy`` sends
matching hosts direct). The recipe gets only the proxy *environment* variables (allowlisted by
the sandbox), never the executor's ``proxy:`` section.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from executor.config import ProxySettings
from executor.datahub.gms import GmsClient
from executor.datahub.proxies import environment_proxy, no_proxy_matches, proxies_for
from executor.queue.sqs import SqsQueue
from tests.ops.connect_proxy import ConnectProxy
from tests.ops.test_once import (
    bundled_venv_root,
    executor_yaml,
    file_recipe,
    request_run,
    wait_terminal,
)
from tests.service.processes import ExecutorProcess


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as server:
        yield server
    assert not [t for t in threading.enumerate() if t.name.startswith("test-proxy")]


def port_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


def test_proxy_forwards_plain_http_tunnels_connect_and_refuses_other_hosts(
    proxy: ConnectProxy, control_plane: Any
) -> None:
    via = {"http": proxy.url}
    assert requests.get(f"{control_plane.gms_url}/health", proxies=via, timeout=10).status_code == 200
    tunnel = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    tunnel.set_tunnel(port_of(control_plane.gms_url))
    tunnel.request("GET", "/health")
    assert tunnel.getresponse().status == 200
    tunnel.close()
    refused = requests.get("http://example.invalid/", proxies=via, timeout=10)
    assert refused.status_code == 403 and proxy.refused == ["example.invalid:80"]
    kinds = [(kind, target) for kind, target, _ in proxy.carried]
    assert kinds == [("GET", port_of(control_plane.gms_url)), ("CONNECT", port_of(control_plane.gms_url))]


def test_configured_proxy_carries_gms_and_sqs_calls_to_loopback(
    proxy: ConnectProxy, control_plane: Any
) -> None:
    settings = ProxySettings(http=proxy.url)
    with GmsClient(control_plane.gms_url, control_plane.token,
                   proxies=proxies_for(settings, control_plane.gms_url)) as gms:
        lease = gms.list_executor_configs("default")
    assert lease is not None
    queue = SqsQueue(lease, proxies=proxies_for(settings, lease.queue_url))
    try:
        assert queue.approximate_depth() == 0
    finally:
        queue.close()
    assert proxy.targets() == {port_of(control_plane.gms_url), port_of(control_plane.sqs_gateway)}


def test_environment_proxy_applies_to_loopback_unless_no_proxy_names_it(
    proxy: ConnectProxy, control_plane: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    none = proxies_for(ProxySettings(), control_plane.gms_url)
    assert none is None  # no proxy section: the libraries read the environment themselves
    with GmsClient(control_plane.gms_url, control_plane.token, proxies=none) as gms:
        lease = gms.list_executor_configs("default")
    assert lease is not None
    _depth(lease, None)
    assert proxy.targets() == {port_of(control_plane.gms_url), port_of(control_plane.sqs_gateway)}

    before = len(proxy.carried)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with GmsClient(control_plane.gms_url, control_plane.token) as gms:
        gms.health()
    _depth(lease, None)
    assert len(proxy.carried) == before


def test_configured_no_proxy_goes_direct_and_ignores_the_environment(
    proxy: ConnectProxy, control_plane: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    settings = ProxySettings(http=proxy.url, no_proxy="localhost,127.0.0.0/8")
    with GmsClient(control_plane.gms_url, control_plane.token,
                   proxies=proxies_for(settings, control_plane.gms_url)) as gms:
        lease = gms.list_executor_configs("default")
    assert lease is not None
    _depth(lease, proxies_for(settings, lease.queue_url))
    assert proxy.carried == []


@pytest.mark.parametrize(
    ("rules", "host", "port", "bypass"),
    [
        ("localhost,127.0.0.1", "127.0.0.1", 80, True),
        (".corp.example", "gms.corp.example", 443, True),
        ("corp.example", "corp.example", 443, True),
        ("corp.example", "notcorp.example", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("127.0.0.1:8080", "127.0.0.1", 8080, True),
        ("127.0.0.1:8080", "127.0.0.1", 80, False),
        ("::1", "::1", 80, True),
        ("*", "anything.example", 443, True),
        (" , ", "anything.example", 443, False),
    ],
)
def test_no_proxy_rules(rules: str, host: str, port: int, bypass: bool) -> None:
    assert no_proxy_matches(rules, host, port) is bypass


def _depth(lease: Any, proxies: dict[str, str | None] | None) -> None:
    queue = SqsQueue(lease, proxies=proxies)
    try:
        queue.approximate_depth()
    finally:
        queue.close()


@pytest.mark.cli
@pytest.mark.slow
def test_a_whole_task_runs_with_gms_and_sqs_through_the_configured_proxy(
    proxy: ConnectProxy, control_plane: Any, tmp_path: Path
) -> None:
    config = executor_yaml(tmp_path, control_plane, bundled_venv_root(), extra={"proxy": {"http": proxy.url}})
    executor = ExecutorProcess(["run", "-c", str(config)], {"DATAHUB_GMS_TOKEN": control_plane.token})
    try:
        urn = request_run(control_plane, file_recipe(tmp_path, "proxied"))
        assert wait_terminal(control_plane, urn)["status"] == "SUCCESS"
        assert executor.terminate(timeout=60) == 0
    finally:
        executor.kill()
    assert {port_of(control_plane.gms_url), port_of(control_plane.sqs_gateway)} <= proxy.targets()
    paths = {path for _, _, path in proxy.carried}
    assert any(p.startswith("/api/graphql") for p in paths)  # lease, secrets
    assert any("ingestProposal" in p for p in paths)  # progress and the result
    assert not proxy.refused
    assert control_plane.token not in "".join(executor.raw)
    assert not psutil.Process().children(recursive=True)


def test_a_no_proxy_entry_with_the_default_port_matches_a_url_without_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ProxySettings(https="http://proxy.example.invalid:3128", no_proxy="gms.corp:443")
    assert proxies_for(settings, "https://gms.corp") == {"http": None, "https": None}
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "gms.corp:443")
    assert environment_proxy("https://gms.corp") is None  # the two paths agree
