"""``Origin`` on its own connections: reuse, a connection the server closed while idle, a private
CA, CONNECT with credentials (through an http:// and an https:// proxy), encoded, chunked and
malformed answers, the cap and a stall mid-answer.

Real servers on loopback: raw-socket peers (``tests.security.gms_peer``) that control every
byte, the tests' CONNECT proxy (``tests.ops.connect_proxy``), a TLS front that makes it an
https:// proxy, and certificates signed by a private CA (``private_ca``).
"""

from __future__ import annotations

import gzip
import socket
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest

from executor.datahub.bounded_http import CALL_ERRORS, CallLimits, DeadlineExceeded, ProxyError, TooLarge
from executor.datahub.http_origin import Origin
from tests.adapters.private_ca import PrivateCa, TlsFront
from tests.ops.connect_proxy import ConnectProxy, _ProxyHandler
from tests.security.gms_peer import ANSWER, HostilePeer, read_head

LIMITS = CallLimits(total_s=10.0, connect_s=5.0, max_bytes=64 * 1024)


def _serve(peers: list[HostilePeer], behaviour: Any, tls: Any = None) -> HostilePeer:
    peer = HostilePeer(behaviour, tls).start()
    peers.append(peer)
    return peer


def _answer(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_a_connection_the_server_closed_while_idle_is_not_used(peers: list[HostilePeer]) -> None:
    """The peer answers and then closes (an idle timeout): each next call must go out on a new
    connection, never into the closed one, and each reaches the server exactly once."""
    answered: list[threading.Event] = []
    lock = threading.Lock()

    def answer_then_close(peer: HostilePeer, conn: socket.socket) -> None:
        peer.send(conn, ANSWER)  # no "Connection: close": the client cannot know
        conn.shutdown(socket.SHUT_WR)  # the FIN goes now
        with lock:
            answered[-1].set()

    peer = _serve(peers, answer_then_close)
    origin = Origin(peer.url, proxies={"http": None})
    try:
        for _ in range(4):
            with lock:
                answered.append(threading.Event())
            assert origin.call("GET", "/config", LIMITS, headers={}).content == b"{}"
            assert answered[-1].wait(10), "the peer closed its side"
    finally:
        origin.close()
    assert len(answered) == 4 and len(peer._conns) == 4, "one request per connection, none sent twice"


def _answer_twice(peer: HostilePeer, conn: Any) -> None:
    peer.send(conn, ANSWER)
    if not read_head(conn):
        raise OSError("client closed")
    peer.send(conn, ANSWER)


def test_a_kept_connection_carries_the_next_call(peers: list[HostilePeer]) -> None:
    peer = _serve(peers, _answer_twice)
    origin = Origin(peer.url, proxies={"http": None})
    try:
        for _ in range(2):
            assert origin.call("GET", "/health", LIMITS, headers={}).status == 200
    finally:
        origin.close()
    assert len(peer._conns) == 1




def test_a_private_ca_is_trusted_and_the_name_checked(peers: list[HostilePeer], tmp_path: Path) -> None:
    ca = PrivateCa(tmp_path)
    peer = _serve(peers, lambda p, conn: p.send(conn, ANSWER), ca.server_context("localhost"))
    by_name = peer.url.replace("127.0.0.1", "localhost")
    origin = Origin(by_name, verify=str(ca.ca_file), proxies={"https": None})
    try:
        assert origin.call("GET", "/config", LIMITS, headers={}).content == b"{}"
    finally:
        origin.close()
    by_address = Origin(peer.url, verify=str(ca.ca_file), proxies={"https": None})  # not its name
    try:
        with pytest.raises(CALL_ERRORS, match=r"(?i)match"):
            by_address.call("GET", "/config", LIMITS, headers={})
    finally:
        by_address.close()


class _CredentialsProxy(ConnectProxy):
    """The tests' CONNECT proxy, also recording each request's ``Proxy-Authorization``."""

    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = _RecordingHandler
        self.credentials: list[str | None] = []


class _RecordingHandler(_ProxyHandler):
    server: _CredentialsProxy

    def do_CONNECT(self) -> None:
        self.server.credentials.append(self.headers.get("Proxy-Authorization"))
        super().do_CONNECT()


@pytest.mark.parametrize("over_tls", [False, True], ids=["http-proxy", "https-proxy"])
def test_connect_through_a_proxy_with_its_credentials(
    peers: list[HostilePeer], tmp_path: Path, over_tls: bool
) -> None:
    ca = PrivateCa(tmp_path)
    peer = _serve(peers, _answer_twice, ca.server_context("localhost"))
    target = peer.url.replace("127.0.0.1", "localhost")
    front_context = ca.server_context("127.0.0.1")
    with _CredentialsProxy() as proxy, TlsFront(front_context, ("127.0.0.1", proxy.port)) as front:
        proxy_url = (front.url if over_tls else proxy.url).replace("://", "://ops:p%40ss@")
        origin = Origin(target, verify=str(ca.ca_file), proxies={"https": proxy_url})
        try:
            assert origin.call("GET", "/config", LIMITS, headers={}).content == b"{}"
            assert origin.call("GET", "/config", LIMITS, headers={}).content == b"{}"  # kept alive
        finally:
            origin.close()
        assert front.accepted == (1 if over_tls else 0)
    assert proxy.carried == [("CONNECT", target.split("://", 1)[1], "")]
    assert proxy.credentials == ["Basic b3BzOnBAc3M="]  # ops:p@ss


def test_an_unreachable_proxy_is_a_proxy_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    origin = Origin("https://localhost:1", proxies={"https": f"http://127.0.0.1:{port}"})
    try:
        with pytest.raises(ProxyError, match="cannot go through the proxy"):
            origin.call("GET", "/", LIMITS, headers={})
    finally:
        origin.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_an_encoded_answer_is_decoded(peers: list[HostilePeer], encoding: str) -> None:
    body = b'{"value": "' + b"x" * 5000 + b'"}'
    packed = {"gzip": gzip.compress(body), "deflate": zlib.compress(body),
              "raw-deflate": zlib.compress(body)[2:-4]}[encoding]
    name = "gzip" if encoding == "gzip" else "deflate"
    peer = _serve(peers, lambda p, conn: p.send(conn, _answer(packed, f"Content-Encoding: {name}")))
    origin = Origin(peer.url, proxies={"http": None})
    try:
        assert origin.call("GET", "/", LIMITS, headers={}).content == body
    finally:
        origin.close()


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip", "x-custom"])
def test_an_answer_in_an_unknown_encoding_is_a_call_error(peers: list[HostilePeer], encoding: str) -> None:
    """Never the compressed bytes passed on as the body."""
    packed = gzip.compress(b'{"value": 1}')
    peer = _serve(peers, lambda p, conn: p.send(conn, _answer(packed, f"Content-Encoding: {encoding}")))
    origin = Origin(peer.url, proxies={"http": None})
    try:
        with pytest.raises(CALL_ERRORS, match="unsupported Content-Encoding"):
            origin.call("GET", "/", LIMITS, headers={})
    finally:
        origin.close()


def test_an_identity_encoding_is_the_body_itself(peers: list[HostilePeer]) -> None:
    peer = _serve(peers, lambda p, conn: p.send(conn, _answer(b"{}", "Content-Encoding: identity")))
    origin = Origin(peer.url, proxies={"http": None})
    try:
        assert origin.call("GET", "/", LIMITS, headers={}).content == b"{}"
    finally:
        origin.close()


def test_a_small_compressed_answer_cannot_expand_past_the_cap(peers: list[HostilePeer]) -> None:
    bomb = gzip.compress(b"0" * (50 * 1024 * 1024))  # about 50 KB that inflate to 50 MB
    peer = _serve(peers, lambda p, conn: p.send(conn, _answer(bomb, "Content-Encoding: gzip")))
    origin = Origin(peer.url, proxies={"http": None})
    try:
        with pytest.raises(TooLarge):
            origin.call("GET", "/", CallLimits(total_s=10.0, connect_s=5.0, max_bytes=1 << 20), headers={})
    finally:
        origin.close()


def test_a_chunked_answer_after_a_continue_is_read_whole(peers: list[HostilePeer]) -> None:
    answer = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
              b"X-Folded: one\r\n two\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n")
    peer = _serve(peers, lambda p, conn: p.send(conn, answer))
    origin = Origin(peer.url, proxies={"http": None})
    try:
        got = origin.call("POST", "/", LIMITS, headers={}, body=b"{}")
    finally:
        origin.close()
    assert (got.status, got.content, got.headers.get("x-folded")) == (200, b"hello world", "one two")


def test_a_stall_mid_answer_ends_at_the_deadline(peers: list[HostilePeer]) -> None:
    def half_then_silent(peer: HostilePeer, conn: socket.socket) -> None:
        peer.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"{" * 50)
        peer.stopping.wait()

    peer = _serve(peers, half_then_silent)
    origin = Origin(peer.url, proxies={"http": None})
    try:
        with pytest.raises(DeadlineExceeded):
            origin.call("GET", "/", CallLimits(total_s=1.0, connect_s=1.0, max_bytes=1 << 20), headers={})
    finally:
        origin.close()
    assert peer.sent > 0


@pytest.mark.parametrize("headers", [
    {"X-Token": "a\r\nX-Admin: yes"}, {"Authorization": "Bearer test-token-9\n"},
    {"Authorization": "Bearer test-token-9\x00"}, {"Authorization": "Bearer test-tök\u20ac-9"},
    {"X Token": "a"}, {"": "a"},
], ids=["smuggled", "trailing-newline", "nul", "beyond-latin-1", "space-in-name", "no-name"])
def test_a_header_it_cannot_carry_is_a_call_error_without_its_value(headers: dict[str, str]) -> None:
    """A call error (the actor's callers catch ``CALL_ERRORS``), refused before any connection."""
    origin = Origin("http://127.0.0.1:1", proxies={"http": None})
    with pytest.raises(CALL_ERRORS) as caught:
        origin.call("GET", "/", LIMITS, headers=headers)
    assert "test-t" not in str(caught.value) and "yes" not in str(caught.value)
    assert "refused" not in str(caught.value).lower(), "no connection was tried"


def test_a_path_with_a_space_or_line_break_is_a_call_error() -> None:
    origin = Origin("http://127.0.0.1:1", proxies={"http": None})
    for path in ("/a b", "/a\r\nX: y", "/\u20ac"):
        with pytest.raises(CALL_ERRORS):
            origin.call("GET", path, LIMITS, headers={})
