"""A GMS call with a body goes out in one write on a kept-alive connection (head and body
together), and every request still arrives whole: a body of many slices, an empty body, a call
without a body, and the first call of a connection (whose head goes as before)."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from typing import Any

import pytest

from executor.datahub.bounded_http import CallLimits
from executor.datahub.http_origin import Origin
from executor.datahub.http_pool import Connection
from tests.fixtures.http_thread import Answering, serving

LIMITS = CallLimits(total_s=10.0, connect_s=5.0, max_bytes=1 << 20)


class Echo(Answering):
    """Answers each request with its method, path and body."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.answer(f"{self.command} {self.path} ".encode() + body)

    do_GET = do_POST


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    with serving(server, "echo-http"):
        made = Origin(f"http://127.0.0.1:{server.server_address[1]}", proxies={"http": None})
        try:
            yield made
        finally:
            made.close()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write the client's connections make (each is one ``sendall``)."""
    seen: list[bytes] = []
    original = Connection.write

    def record(self: Connection, data: Any, at: float) -> None:
        seen.append(bytes(data))
        original(self, data, at)

    monkeypatch.setattr(Connection, "write", record)
    return seen


def test_a_call_with_a_body_is_one_write_once_connected(origin: Origin, writes: list[bytes]) -> None:
    headers = {"Content-Type": "application/json"}
    first = origin.call("POST", "/first", LIMITS, headers=headers, body=b'{"n": 1}')
    assert first.content == b'POST /first {"n": 1}'
    writes.clear()
    second = origin.call("POST", "/second", LIMITS, headers=headers, body=b'{"n": 2}')
    assert second.content == b'POST /second {"n": 2}'
    assert len(writes) == 1 and writes[0].startswith(b"POST /second ") and writes[0].endswith(b'{"n": 2}')


def test_every_kind_of_request_arrives_whole(origin: Origin, writes: list[bytes]) -> None:
    origin.call("GET", "/warm", LIMITS, headers={})
    slices = [b"a" * 70_000, b"b" * 10, b"c" * 5]
    sliced = origin.call("POST", "/sliced", LIMITS, headers={"Content-Length": "70015"}, body=iter(slices))
    assert sliced.content == b"POST /sliced " + b"".join(slices)
    assert origin.call("POST", "/empty", LIMITS, headers={}, body=b"").content == b"POST /empty "
    writes.clear()
    assert origin.call("GET", "/plain", LIMITS, headers={}).content == b"GET /plain "
    assert len(writes) == 1, "a call without a body: its head alone, as before"


def test_a_large_body_is_not_copied_to_join_its_head(origin: Origin, writes: list[bytes]) -> None:
    """Joining copies the piece: above one read chunk (64 KiB) the head goes alone first, so a
    result of megabytes is never held twice for the sake of one write."""
    origin.call("GET", "/warm", LIMITS, headers={})
    body = b"x" * (256 << 10)
    writes.clear()
    answer = origin.call("POST", "/large", LIMITS, headers={"Content-Type": "application/json"}, body=body)
    assert answer.content == b"POST /large " + body
    assert len(writes) == 2 and writes[0].startswith(b"POST /large ") and writes[1] == body
