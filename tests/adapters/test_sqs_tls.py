"""SqsQueue over TLS: an https endpoint through a CONNECT proxy, the CA it trusts, a cut poll.

The endpoint is a loopback peer with a fresh self-signed certificate; the proxy is the tests'
own CONNECT proxy (loopback targets only), which records what it carried.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.errors import TransportError
from executor.queue.sqs import SqsQueue
from tests.adapters.conftest import make_lease
from tests.ops.connect_proxy import ConnectProxy
from tests.security.gms_peer import ANSWER, HostilePeer, silent, tls_context

PATH = "/123456789012/pool"


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as server:
        yield server


def _peer(peers: list[HostilePeer], behaviour: Any, tmp_path: Path) -> tuple[HostilePeer, Path]:
    context, cert = tls_context(tmp_path)
    peer = HostilePeer(behaviour, context).start()
    peers.append(peer)
    return peer, cert


def test_https_through_a_connect_proxy_with_aws_ca_bundle(
    proxy: ConnectProxy, peers: list[HostilePeer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, cert = _peer(peers, lambda p, conn: p.send(conn, ANSWER), tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    queue = SqsQueue(make_lease(peer.url + PATH), proxies={"https": proxy.url, "http": None})
    try:
        assert queue.receive(1, 0, 30) == []
    finally:
        queue.close()
    assert proxy.carried == [("CONNECT", peer.url.split("://", 1)[1], "")]


def test_an_untrusted_certificate_is_refused(
    peers: list[HostilePeer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, _cert = _peer(peers, lambda p, conn: p.send(conn, ANSWER), tmp_path)
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    queue = SqsQueue(make_lease(peer.url + PATH), connect_timeout_s=2.0)
    try:
        with pytest.raises(TransportError, match=r"(?i)certificate|SSL"):
            queue.approximate_depth()
    finally:
        queue.close()


def test_interrupt_cuts_a_poll_tunnelled_over_tls(
    proxy: ConnectProxy, peers: list[HostilePeer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = threading.Event()

    def silent_once_asked(p: HostilePeer, conn: Any) -> None:
        asked.set()  # the peer has read the whole request: the poll is waiting for its answer
        silent(p, conn)

    peer, cert = _peer(peers, silent_once_asked, tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    queue = SqsQueue(make_lease(peer.url + PATH), proxies={"https": proxy.url})
    outcome: list[Any] = []

    def receive() -> None:
        try:
            outcome.append(queue.receive(1, 20, 30))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        assert asked.wait(10), "the tunnelled poll never reached the peer"
        queue.interrupt()
        thread.join(15)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], TransportError)
    finally:
        queue.close()
