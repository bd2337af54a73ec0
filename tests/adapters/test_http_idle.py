"""A kept connection ages out, TCP keepalive is on, and a proxy's credentials stay out of reprs.

A server's idle timeout can fire between the pool's liveness check and the send, and a firewall
can forget an idle flow without a word: a connection that rested longer than ``IDLE_S`` (or
than the server's ``Keep-Alive: timeout=N``, less a second) is closed, not used. The pool's
clock is the test's own (no sleeping); the peer is a raw socket on loopback.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from executor.datahub.bounded_http import CallLimits
from executor.datahub.http_origin import Origin
from executor.datahub.http_pool import IDLE_S, ConnectionPool, Route, idle_limit
from tests.security.gms_peer import ANSWER, HostilePeer

LIMITS = CallLimits(total_s=10.0, connect_s=5.0, max_bytes=64 * 1024)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def peer() -> Iterator[HostilePeer]:
    started = HostilePeer(lambda p, conn: p.stopping.wait(), reads=False).start()
    yield started
    started.stop()


def _pool(peer: HostilePeer, clock: Clock) -> ConnectionPool:
    return ConnectionPool(Route("127.0.0.1", int(peer.url.rsplit(":", 1)[1])), 2, clock=clock)


@pytest.mark.parametrize(("idle_s", "rested", "kept"), [
    (IDLE_S, IDLE_S - 1, True), (IDLE_S, IDLE_S + 1, False), (idle_limit("timeout=5, max=100"), 4.5, False),
], ids=["within", "too-long", "keep-alive-header"])
def test_a_connection_resting_too_long_is_closed_not_used(peer: HostilePeer, idle_s: float, rested: float,
                                                          kept: bool) -> None:
    clock = Clock()
    pool = _pool(peer, clock)
    try:
        first = pool.take(5.0, time.monotonic() + 10)
        pool.give_back(first, idle_s)
        clock.now += rested
        second = pool.take(5.0, time.monotonic() + 10)
        assert (second is first) == kept
        assert (first.sock is None) != kept, "the aged connection is closed"
        assert second.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        second.close()
    finally:
        pool.close()


@pytest.mark.parametrize(("header", "limit"), [
    (None, IDLE_S), ("timeout=5", 4.0), ("max=100, Timeout = 3", 2.0), ("timeout=600", IDLE_S),
    ("timeout=0", 0.0), ("timeout=x", IDLE_S), ("timeout=" + "9" * 5000, IDLE_S), ("timeout=\u00b2", IDLE_S),
])
def test_the_keep_alive_header_only_shortens_the_rest(header: str | None, limit: float) -> None:
    assert idle_limit(header) == limit


def test_an_answer_with_keep_alive_sets_its_connection_s_rest() -> None:
    """Through ``Origin``: the header read off a real answer reaches the pool."""
    answer = ANSWER.replace(b"Content-Length", b"Keep-Alive: timeout=1\r\nContent-Length")

    def answer_each(peer: HostilePeer, conn: socket.socket) -> None:
        peer.send(conn, answer)
        while conn.recv(65536):
            peer.send(conn, answer)

    peer = HostilePeer(answer_each).start()
    origin = Origin(peer.url, proxies={"http": None})
    try:
        for _ in range(2):  # timeout=1 leaves no rest: each call on a new connection
            assert origin.call("GET", "/", LIMITS, headers={}).content == b"{}"
    finally:
        origin.close()
        peer.stop()
    assert len(peer._conns) == 2


def test_a_route_s_repr_never_shows_the_proxy_credentials() -> None:
    origin = Origin("https://gms.test", proxies={"https": "http://ops:s3cret-pw@proxy.test:3128"})
    route = origin._route
    assert route is not None and route.proxy_headers
    assert "s3cret" not in repr(route) and "Basic" not in repr(route)
    assert "b3BzOnMzY3JldC1wdw" not in repr(route)  # base64 of ops:s3cret-pw


@pytest.mark.parametrize("password", ["pa/ss", "12/ss", "pa?ss", "pa#ss"])
def test_a_slash_in_a_proxy_password_is_refused_without_its_text(password: str) -> None:
    """urlsplit reads "http://ops:pa/ss@proxy:3128" as host "ops", port "pa": its ValueError
    quotes the password's start, which would become the logged refusal ("12/ss": port 12, and
    "ops:12" in every failed call's error)."""
    def refusal(secret: str) -> str | None:
        return Origin("https://gms.test", proxies={"https": f"http://ops:{secret}@proxy.test:3128"}).refusal

    found = refusal(password)
    assert found is not None and "percent-encode" in found
    assert found == refusal(password.replace("ss", "zz").replace("pa", "qu").replace("12", "34")), \
        "the same text whatever the password: none of it quoted"
