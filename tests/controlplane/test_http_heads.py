"""The control plane's own HTTP head reader (``http_headers``), in its servers and in its client
to moto: what HTTP/1.1 needs is kept (keep-alive, Content-Length, Expect: 100-continue,
repeated headers), malformed or oversized heads are refused (400, 431, 505) and the
connection closed, and a refusal never echoes a header's content."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import pytest

from executor.local.controlplane.http_base import JsonHandler, LoopbackServer
from executor.local.controlplane.http_headers import MAX_HEAD, MAX_HEADERS, HeaderError, read_headers
from executor.local.controlplane.upstream import NoDelayConnection

SECRET = "made-up-token-5e1f"


class EchoHandler(JsonHandler):
    """Answers what it read: the body's length and a few headers."""

    def do_POST(self) -> None:
        body = self.read_body()
        if body is None:
            return
        self.send_json(200, {"body": body.decode(), "type": self.headers.get("Content-Type"),
                             "all": self.headers.get_all("X-Repeat")})

    do_GET = do_POST


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer(("127.0.0.1", 0), EchoHandler, "test-heads")
    srv.start()
    yield srv
    srv.stop()


class Conn:
    """One client connection: its socket and a reader on it."""

    def __init__(self, srv: LoopbackServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        self.reader = self.sock.makefile("rb")

    def answer(self) -> bytes:
        """One answer: its head and its Content-Length body."""
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.reader.readline()
            assert line, f"the server closed the connection after {head!r}"
            head += line
        sizes = [h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
        return head + self.reader.read(int(sizes[0]) if sizes else 0)

    def closed(self) -> bool:
        """Whether the server has closed the connection (EOF)."""
        return self.reader.read(1) == b""

    def kept(self) -> bool:
        """Whether the connection still serves a request."""
        self.sock.sendall(_post(b"again"))
        return self.answer().startswith(b"HTTP/1.1 200")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _answers(srv: LoopbackServer, data: bytes, count: int) -> tuple[list[bytes], Conn]:
    """Send ``data`` on a new connection and read ``count`` answers; the connection stays open."""
    conn = Conn(srv)
    conn.sock.sendall(data)
    return [conn.answer() for _ in range(count)], conn


def _exchange(srv: LoopbackServer, data: bytes) -> tuple[bytes, bool]:
    """One answer to ``data`` and whether the server then closed the connection."""
    answers, conn = _answers(srv, data, 1)
    try:
        return answers[0], conn.closed()
    finally:
        conn.close()


def _post(body: bytes, *extra: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    head = [b"POST /echo " + version, b"Host: x", b"Content-Type: text/plain",
            b"Content-Length: " + str(len(body)).encode(), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_keep_alive_serves_two_requests_on_one_connection(server: LoopbackServer) -> None:
    answers, sock = _answers(server, _post(b"one") + _post(b"two", b"X-Repeat: a", b"x-repeat: b"), 2)
    answer = b"".join(answers)
    try:
        assert answer.count(b"HTTP/1.1 200 OK") == 2 and sock.kept()
    finally:
        sock.close()
    assert b'"body": "one"' in answer and b'"body": "two"' in answer
    assert b'"all": ["a", "b"]' in answer and b'"type": "text/plain"' in answer


@pytest.mark.parametrize("extra, version", [((b"Connection: close",), b"HTTP/1.1"), ((), b"HTTP/1.0")])
def test_close_and_http_1_0_end_the_connection(server: LoopbackServer, extra: tuple[bytes, ...],
                                               version: bytes) -> None:
    answer, closed = _exchange(server, _post(b"x", *extra, version=version))
    assert b" 200 OK" in answer and closed


def test_http_1_0_keep_alive_keeps_it(server: LoopbackServer) -> None:
    answers, sock = _answers(server, _post(b"x", b"Connection: keep-alive", version=b"HTTP/1.0"), 1)
    try:
        assert b" 200 OK" in answers[0] and sock.kept()
    finally:
        sock.close()


def test_expect_100_continue_is_answered_first(server: LoopbackServer) -> None:
    answers, sock = _answers(server, _post(b"abc", b"Expect: 100-continue"), 2)
    sock.close()
    assert answers[0].startswith(b"HTTP/1.1 100 Continue\r\n") and b'"body": "abc"' in answers[1]


@pytest.mark.parametrize("line, status", [
    (b" folded: value", b"400"),
    (b"Bad Name: value", b"400"),
    (b"Name : value", b"400"),
    (b"NoColon", b"400"),
    (b"Authorization: Bearer " + SECRET.encode() + b"\x01", b"400"),
    (b"Content-Length: 7", b"400"),  # a second, different Content-Length
    (b"X-Big: " + b"a" * 70000, b"431"),
])
def test_a_malformed_head_is_refused_and_the_connection_closed(server: LoopbackServer, line: bytes,
                                                                 status: bytes) -> None:
    answer, closed = _exchange(server, _post(b"x", line) + _post(b"never read"))
    assert answer.startswith(b"HTTP/1.1 " + status) and closed
    assert answer.count(b"HTTP/1.1") == 1 and SECRET.encode() not in answer


def test_too_many_headers_are_refused(server: LoopbackServer) -> None:
    lines = [b"X-%d: v" % i for i in range(MAX_HEADERS)]
    answer, closed = _exchange(server, _post(b"x", *lines))
    assert answer.startswith(b"HTTP/1.1 431") and closed


@pytest.mark.parametrize("line, status", [
    (b"GET /\r\n", b"400"),  # HTTP/0.9
    (b"GET / HTTP/1.1 extra\r\n", b"400"),
    (b"GET  / HTTP/1.1\r\n", b"400"),
    (b"GET / HTTX/1.1\r\n", b"400"),
    (b"GET / HTTP/2.0\r\n", b"505"),
])
def test_a_malformed_request_line_is_refused(server: LoopbackServer, line: bytes, status: bytes) -> None:
    answer, closed = _exchange(server, line + b"Host: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 " + status) and closed


def test_a_head_cut_short_is_refused() -> None:
    with pytest.raises(HeaderError) as caught:
        read_headers(io.BytesIO(b"Host: x\r\nX-Half: y").readline)
    assert caught.value.status == 400


def test_lookups_are_case_insensitive_and_keep_the_order() -> None:
    headers = read_headers(io.BytesIO(b"Host: x\r\nX-A:  1 \r\nx-a: 2\r\nEmpty:\r\n\r\n").readline)
    assert headers.get("x-A") == "1" and headers["HOST"] == "x" and "empty" in headers
    assert headers.get("Empty") == "" and headers.get("missing", "d") == "d"
    assert headers.items() == [("Host", "x"), ("X-A", "1"), ("x-a", "2"), ("Empty", "")]


def test_the_client_reads_answers_and_keeps_the_connection(server: LoopbackServer) -> None:
    conn = NoDelayConnection("127.0.0.1", server.port, timeout=5)
    try:
        for body in (b"first", b"second"):
            conn.request("POST", "/echo", body=body, headers={"Content-Type": "text/plain"})
            answer = conn.getresponse()
            assert answer.status == 200 and body in answer.read() and not answer.will_close
            assert answer.getheader("content-type") == "application/json"
            assert ("Content-Type", "application/json") in answer.getheaders()
    finally:
        conn.close()


def _serve_once(listener: socket.socket, answer: bytes) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.recv(65536)
        conn.sendall(answer)


@pytest.mark.parametrize("answer, expected", [
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", 204),
    (b"HTTP/1.1 200 OK\r\n bad fold\r\nContent-Length: 0\r\n\r\n", None),
])
def test_the_client_skips_1xx_and_refuses_a_malformed_answer(answer: bytes, expected: int | None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_serve_once, args=(listener, answer), daemon=True)
        thread.start()
        conn = NoDelayConnection("127.0.0.1", listener.getsockname()[1], timeout=5)
        try:
            conn.request("GET", "/")
            if expected is None:
                with pytest.raises(Exception, match="bad answer head") as caught:
                    conn.getresponse()
                assert "http.client" in type(caught.value).__module__
            else:
                got = conn.getresponse()
                assert got.status == expected and got.getheader("X-A") == "1" and got.read() == b""
        finally:
            conn.close()
            thread.join(5)


def _raw(*lines: bytes, body: bytes = b"") -> bytes:
    return b"\r\n".join([b"POST /echo HTTP/1.1", b"Host: x", *lines]) + b"\r\n\r\n" + body


@pytest.mark.parametrize("length", [b"+5", b"1_0", b"5 5", b"-1", b"0x5", b"5,5", b""])
def test_a_content_length_that_is_not_plain_digits_is_refused(server: LoopbackServer, length: bytes) -> None:
    answer, closed = _exchange(server, _raw(b"Content-Length: " + length, body=b"abcde") + _post(b"never"))
    assert answer.startswith(b"HTTP/1.1 400") and b"Bad Content-Length" in answer and closed


def test_a_content_length_with_spaces_around_it_is_read() -> None:
    headers = read_headers(io.BytesIO(b"Content-Length:  5 \r\n\r\n").readline)
    assert headers.get("content-length") == "5"  # the spaces around a value are not part of it


@pytest.mark.parametrize("lines, status", [
    ((b"Transfer-Encoding: chunked",), b"411"),
    ((b"Transfer-Encoding: gzip, chunked",), b"501"),
    ((b"Transfer-Encoding: identity",), b"501"),
    ((b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"), b"501"),
    ((b"Transfer-Encoding: chunked", b"Content-Length: 5"), b"400"),
    ((b"Content-Length: 5", b"Transfer-Encoding: xchunked"), b"400"),
])
def test_any_transfer_encoding_on_a_request_is_refused_and_the_connection_closed(
        server: LoopbackServer, lines: tuple[bytes, ...], status: bytes) -> None:
    answer, closed = _exchange(server, _raw(*lines, body=b"5\r\nabcde\r\n0\r\n\r\n") + _post(b"never"))
    assert answer.startswith(b"HTTP/1.1 " + status) and closed
    assert answer.count(b"HTTP/1.1") == 1  # the body was never taken for a next request


def test_a_whole_head_over_its_bound_is_refused(server: LoopbackServer) -> None:
    lines = [b"X-%d: " % i + b"a" * 30000 for i in range(3)]  # each line under MAX_LINE
    assert sum(map(len, lines)) > MAX_HEAD > max(map(len, lines))
    answer, closed = _exchange(server, _post(b"x", *lines))
    assert answer.startswith(b"HTTP/1.1 431") and closed


def test_a_bad_content_length_in_an_answer_is_refused() -> None:
    with pytest.raises(HeaderError) as caught:
        read_headers(io.BytesIO(b"Content-Length: +5\r\n\r\n").readline)
    assert caught.value.status == 400
