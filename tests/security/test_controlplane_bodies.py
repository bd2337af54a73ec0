"""The local control plane checks who asks before it reads a body, and caps bodies (issue 10 point 10).

Raw sockets, so that a test can announce a 60 MiB body and send none of it: a server that read
bodies before checking the token would sit waiting for it; this one answers 401 at once and
closes the connection. An authorized body above the cap gets 413, also unread; the SQS gateway
checks the lease's key before the body in the same way.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from executor.local.controlplane.http_base import MAX_BODY_BYTES
from executor.local.controlplane.server import ControlPlane

ANNOUNCED = 60 * 1024 * 1024
WAIT_S = 20.0
"""How long a test waits for an answer; a server waiting for the announced body never gives one."""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(pools=("default",), token="bodies-test-token",
                         state_dir=str(tmp_path_factory.mktemp("cp-bodies")))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def ask(url: str, head: str, body: bytes = b"") -> tuple[str, bytes]:
    """Send ``head`` (and ``body``), read until the server closes; the status line and the rest."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as conn:
        conn.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    return status.decode(), rest


def post_head(path: str, length: int, token: str | None) -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {length}\r\n")


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_stranger_gets_401_before_the_body_is_read(cp: ControlPlane, token: str | None) -> None:
    status, rest = ask(cp.gms_url, post_head("/api/graphql", ANNOUNCED, token), b"{")
    assert status == "HTTP/1.1 401 Unauthorized"
    assert b"Connection: close" in rest  # the unread body is never taken for a next request


def test_an_authorized_body_over_the_cap_gets_413_unread(cp: ControlPlane) -> None:
    status, rest = ask(cp.gms_url, post_head("/api/graphql", MAX_BODY_BYTES + 1, cp.token), b"{")
    assert status.startswith("HTTP/1.1 413")
    assert str(MAX_BODY_BYTES).encode() in rest


def test_a_chunked_body_is_refused(cp: ControlPlane) -> None:
    head = (f"POST /api/graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cp.token}\r\n"
            "Transfer-Encoding: chunked\r\n")
    status, _ = ask(cp.gms_url, head, b"ffffff\r\n")
    assert status.startswith("HTTP/1.1 411")


def test_an_authorized_body_under_the_cap_is_served(cp: ControlPlane) -> None:
    body = b'{"query": "query { listExecutorConfigs { total } }"}'
    head = post_head("/api/graphql", len(body), cp.token) + "Connection: close\r\n"
    status, rest = ask(cp.gms_url, head, body)
    assert status == "HTTP/1.1 200 OK" and b'"total": 1' in rest


def test_the_sqs_gateway_checks_the_key_before_the_body(cp: ControlPlane) -> None:
    status, rest = ask(cp.sqs_gateway, post_head("/", ANNOUNCED, None), b"{")
    assert status.startswith("HTTP/1.1 400") and b"MissingAuthenticationToken" in rest
