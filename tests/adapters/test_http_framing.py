"""How an answer's body ends, and whether its connection may carry the next call.

A kept connection must never carry one answer's bytes into the next call: a body framed in a
way the client could misread (Content-Length beside chunked, a coding after chunked), bytes a
server sent past its answer, HTTP/1.0 or ``Connection: close`` end the connection; an answer
without a body (HEAD, 204, 304) keeps it. Raw-socket peers on loopback (``HostilePeer``): each
answers every request on its connection with the next of its answers, and counts connections.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from executor.datahub.bounded_http import CALL_ERRORS, CallLimits
from executor.datahub.gms import GmsClient
from executor.datahub.http_origin import Origin
from executor.errors import TransportError
from tests.adapters.private_ca import PrivateCa, TlsFront
from tests.ops.connect_proxy import ConnectProxy
from tests.security.gms_peer import HostilePeer, read_head

LIMITS = CallLimits(total_s=10.0, connect_s=5.0, max_bytes=64 * 1024)
OWN = b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"own":1}'


def _answering(peers: list[HostilePeer], first: bytes, then: bytes = OWN) -> HostilePeer:
    """A peer that answers its first request with ``first``, every later one with ``then``."""
    answers = [first]

    def behaviour(peer: HostilePeer, conn: socket.socket) -> None:
        while True:
            peer.send(conn, answers.pop() if answers else then)
            if not read_head(conn):
                return

    peer = HostilePeer(behaviour).start()
    peers.append(peer)
    return peer


def _two_calls(peer: HostilePeer, method: str = "GET") -> list[bytes]:
    origin = Origin(peer.url, proxies={"http": None})
    try:
        return [origin.call(method, "/", LIMITS, headers={}).content,
                origin.call("GET", "/", LIMITS, headers={}).content]
    finally:
        origin.close()


@pytest.mark.parametrize(("first", "body"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 2", b"{}"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nHTTP/1.1 2", b"{}"),
], ids=["past-length", "past-last-chunk"])
def test_bytes_past_an_answer_end_its_connection(peers: list[HostilePeer], first: bytes, body: bytes) -> None:
    peer = _answering(peers, first)
    assert _two_calls(peer) == [body, b'{"own":1}']
    assert len(peer._conns) == 2, "the connection that held stray bytes was not used again"


@pytest.mark.parametrize(("method", "first", "kept"), [
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", True),
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", True),
    ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", True),
    ("GET", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    ("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    ("GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
], ids=["head", "204", "304", "http1.0-keep-alive", "http1.0", "connection-close"])
def test_which_answers_keep_their_connection(peers: list[HostilePeer], method: str, first: bytes,
                                             kept: bool) -> None:
    peer = _answering(peers, first)
    assert _two_calls(peer, method) == [b"", b'{"own":1}']
    assert len(peer._conns) == (1 if kept else 2)


def test_content_length_beside_chunked_is_ignored_and_the_connection_closed(peers: list[HostilePeer]) -> None:
    """RFC 9112 6.1: chunked wins, and the answer may be a smuggling attempt (the declared
    length, far above the cap, is not the body's either)."""
    peer = _answering(peers, b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\nTransfer-Encoding: chunked"
                             b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert _two_calls(peer) == [b"hello", b'{"own":1}']
    assert len(peer._conns) == 2


def test_a_coding_after_chunked_is_read_until_close(peers: list[HostilePeer]) -> None:
    def behaviour(peer: HostilePeer, conn: socket.socket) -> None:
        peer.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, x-custom\r\n\r\nhello")
        conn.shutdown(socket.SHUT_WR)

    peer = HostilePeer(behaviour).start()
    peers.append(peer)
    origin = Origin(peer.url, proxies={"http": None})
    try:
        assert origin.call("GET", "/", LIMITS, headers={}).content == b"hello"
    finally:
        origin.close()


@pytest.mark.parametrize("over_tls", [False, True], ids=["direct", "https-proxy"])
def test_a_tls_body_until_close_without_close_notify_is_read(
    peers: list[HostilePeer], tmp_path: Path, over_tls: bool
) -> None:
    """The origin closes without TLS's close_notify: the end of the body, as ``SSLSocket``
    reads it directly (its ragged EOF), also inside an https proxy's TLS."""
    def behaviour(peer: HostilePeer, conn: socket.socket) -> None:
        peer.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")
        conn.close()  # no SSL shutdown: no close_notify

    ca = PrivateCa(tmp_path)
    peer = HostilePeer(behaviour, ca.server_context("localhost")).start()
    peers.append(peer)
    front_context = ca.server_context("127.0.0.1")
    with ConnectProxy() as proxy, TlsFront(front_context, ("127.0.0.1", proxy.port)) as front:
        origin = Origin(peer.url.replace("127.0.0.1", "localhost"), verify=str(ca.ca_file),
                        proxies={"https": front.url if over_tls else None})
        try:
            assert origin.call("GET", "/", LIMITS, headers={}).content == b"hello"
        finally:
            origin.close()


@pytest.mark.parametrize("answer", [
    b"", b"HTTP/1.1 2000 OK\r\n\r\n", b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000,
    b"HTTP/1.1 200 OK\r\nX: a\nY: b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 5\n\nab\r\n\r\nc",
    b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", b"HTTP/1.1 \xb200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\xb2\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 5000 + b"\r\n",
    b"HTTP/1.1 099 Early\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    *(b"HTTP/1.1 200 OK\r\nContent-Length: " + declared + b'\r\n\r\n{"own":1}'
      for declared in (b"9, 8", b"9,", b"9, x")),
], ids=["nothing", "status", "not-http", "header", "length", "cut", "chunk", "long-line", "bare-lf",
        "bare-lf-head-crlf-body", "length-superscript", "status-superscript", "length-5000-digits",
        "chunk-superscript", "chunk-5000-digits", "status-099", "status-101", "lengths-differ",
        "length-trailing-comma", "length-not-a-number"])
def test_a_malformed_or_hostile_answer_is_a_call_error(peers: list[HostilePeer], answer: bytes) -> None:
    """Never an unexpected exception in an actor: every such answer ends in the call's own error."""
    peer = HostilePeer(lambda p, conn: p.send(conn, answer)).start()
    peers.append(peer)
    origin = Origin(peer.url, proxies={"http": None})
    try:
        with pytest.raises(CALL_ERRORS):
            origin.call("GET", "/", LIMITS, headers={})
    finally:
        origin.close()


@pytest.mark.parametrize("declared", [
    b"Content-Length: 9, 9\r\n", b"Content-Length: 9\r\nContent-Length: 9\r\n",
], ids=["one-line", "two-headers"])
def test_identical_content_lengths_are_one(peers: list[HostilePeer], declared: bytes) -> None:
    """RFC 9110 8.6: copies of the same length are that length; the connection is kept."""
    peer = _answering(peers, b"HTTP/1.1 200 OK\r\n" + declared + b'\r\n{"own":1}')
    assert _two_calls(peer) == [b'{"own":1}', b'{"own":1}']
    assert len(peer._conns) == 1


def test_json_nested_too_deep_is_gms_answering_without_json(peers: list[HostilePeer]) -> None:
    """``json.loads`` raises ``RecursionError`` (not ``ValueError``) on deep nesting."""
    body = b"[" * 200_000
    peer = _answering(peers, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    with GmsClient(peer.url, "test-token", timeout_s=10.0) as client, \
            pytest.raises(TransportError, match="without JSON"):
        client.server_config()
    with pytest.raises(RecursionError):
        json.loads(body)  # what the client met
