"""The SQS gateway answers without Nagle delays: TCP_NODELAY on both sides, one write per answer.

Before the fix an answer left as two writes (headers, then body) on sockets with Nagle on, so
the body waited for the client's delayed ACK, about 40 ms per SQS call. The bench shows the
latency (``bench/run.py --only sqs``); here the socket settings and the single write are checked
on real connections, without timing anything.
"""

from __future__ import annotations

import socket
from typing import Any

from executor.local.controlplane.gateway import GatewayServer
from tests.fixtures.controlplane import leased_sqs


def _nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _gateway(cp: Any) -> GatewayServer:
    gateway = cp._gateway
    assert isinstance(gateway, GatewayServer)
    return gateway


def test_accepted_connections_have_nagle_off(control_plane: Any) -> None:
    client, url = leased_sqs(control_plane)
    try:
        client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        gateway = _gateway(control_plane)
        with gateway._lock:
            connections = list(gateway._connections)
        assert connections, "boto3 keeps its connection to the gateway open"
        assert all(_nodelay(conn) for conn in connections)
    finally:
        client.close()


def test_upstream_connections_have_nagle_off(control_plane: Any) -> None:
    gateway = _gateway(control_plane)
    conn = gateway.open_upstream()
    try:
        conn.connect()
        assert conn.sock is not None and _nodelay(conn.sock)
    finally:
        gateway.close_upstream(conn)


def test_an_answer_leaves_in_one_write(control_plane: Any) -> None:
    """A raw request: the whole answer, headers and body, arrives in the first read."""
    host, port = control_plane.sqs_gateway.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        first = sock.recv(65536)
    head, _, body = first.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    assert length > 0 and len(body) == length, "the body came with the headers"
