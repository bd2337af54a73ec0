"""How the control plane reaches moto: kept-alive connections for its own calls, one per call for
anyone else, no connection outliving the client that caused it, a closed one replaced, and a
stop that ends every thread although the serving loops no longer poll.

Real sockets only: the control plane's moto server, its gateway with leased boto3 clients, and
raw HTTP. Nothing here is timed (the bench measures the CPU this saves).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import sys
import threading
from typing import Any

from executor.local.controlplane.http_base import IDLE_WAKE_S
from executor.local.controlplane.moto_server import MotoServer
from executor.local.controlplane.server import ControlPlane
from executor.local.controlplane.upstream import KEEP_ALIVE_HEADER, KeptConnection, NoDelayConnection
from tests.faults.ledger import wait_until
from tests.fixtures.controlplane import leased_sqs

SEND = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "AmazonSQS.SendMessage",
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, "
    "SignedHeaders=host, Signature=none",
}


def _moto(cp: Any) -> MotoServer:
    server = cp._moto._server
    assert isinstance(server, MotoServer)
    return server


def _open_connections(server: MotoServer) -> int:
    with server._lock:
        return len(server._connections)


DISPATCH_CONNECTIONS = 1
"""What stays open to moto once the start's boto3 calls have ended: the dispatch's connection."""


def _settled(server: MotoServer) -> None:
    wait_until(lambda: _open_connections(server) == DISPATCH_CONNECTIONS, 10,
               "only the dispatch's connection to moto")


def _send(conn: http.client.HTTPConnection, queue_url: str, headers: dict[str, str]) -> Any:
    body = json.dumps({"QueueUrl": queue_url, "MessageBody": "hello"}).encode()
    conn.request("POST", "/", body=body, headers={**SEND, **headers})
    answer = conn.getresponse()
    answer.read()
    return answer


def test_moto_keeps_only_the_control_planes_connections_open(control_plane: Any) -> None:
    cp = control_plane
    host, port = _moto(cp).host, _moto(cp).port
    kept = http.client.HTTPConnection(host, port, timeout=10)
    other = http.client.HTTPConnection(host, port, timeout=10)
    try:
        first = _send(kept, cp.queue_url("default"), {KEEP_ALIVE_HEADER: "1"})
        sock = kept.sock
        second = _send(kept, cp.queue_url("default"), {KEEP_ALIVE_HEADER: "1"})
        assert (first.status, second.status) == (200, 200)
        assert not second.will_close and kept.sock is sock, "the same socket served both calls"
        plain = _send(other, cp.queue_url("default"), {})
        assert plain.status == 200 and plain.will_close, "a stranger's connection closes after one call"
    finally:
        kept.close()
        other.close()
    messages = cp._moto._sqs.receive_message(QueueUrl=cp.queue_url("default"), MaxNumberOfMessages=10)
    assert [m["Body"] for m in messages["Messages"]] == ["hello"] * 3


def test_the_dispatch_uses_one_kept_connection(control_plane: Any) -> None:
    cp = control_plane
    _settled(_moto(cp))
    ids = {cp._moto.send(cp.queue_url("default"), f"m{i}") for i in range(5)}
    assert len(ids) == 5
    assert _open_connections(_moto(cp)) == DISPATCH_CONNECTIONS, "no new connection per send"


def test_a_gateway_client_leaving_closes_its_connection_to_moto(control_plane: Any) -> None:
    cp = control_plane
    server = _moto(cp)
    _settled(server)
    client, url = leased_sqs(cp)
    try:
        for _ in range(3):
            client.send_message(QueueUrl=url, MessageBody="x")
        assert len(client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == 3
        wait_until(lambda: _open_connections(server) == DISPATCH_CONNECTIONS + 1, 10,
                   "one connection for the client's")
    finally:
        client.close()
    wait_until(lambda: _open_connections(server) == DISPATCH_CONNECTIONS, 10,
               "moto's connection for the client to end")


def test_a_kept_connection_that_moto_closed_is_replaced(control_plane: Any) -> None:
    cp = control_plane
    server = _moto(cp)
    made: list[http.client.HTTPConnection] = []

    def connect() -> http.client.HTTPConnection:
        made.append(NoDelayConnection(server.host, server.port, timeout=10))
        return made[-1]

    kept = KeptConnection(connect)
    body = json.dumps({"QueueUrl": cp.queue_url("default"), "MessageBody": "again"}).encode()
    try:
        assert kept.call("POST", "/", body, SEND)[0] == 200
        local = made[0].sock.getsockname() if made[0].sock else None
        with server._lock:
            theirs = [c for c in server._connections if c.getpeername() == local]
        assert len(theirs) == 1
        theirs[0].shutdown(socket.SHUT_RDWR)  # moto's side goes away while the connection idles
        wait_until(lambda: theirs[0] not in server._connections, 10, "moto's handler for it to end")
        assert kept.call("POST", "/", body, SEND)[0] == 200
        assert len(made) == 2, "the request went again on a new connection"
    finally:
        kept.close()


def test_stop_ends_every_serving_thread_although_the_loops_wait_long() -> None:
    """The serving loops wait up to ``IDLE_WAKE_S`` for a request; ``stop()`` wakes them itself
    and leaves no thread behind (the servers', the handlers', the helper that stops a loop)."""
    assert IDLE_WAKE_S >= 10, "the loops do not poll at rest"
    before = set(threading.enumerate())
    with ControlPlane(pools=("default",)) as cp:  # stopped again (idempotent) if a step fails
        client, url = leased_sqs(cp)
        try:
            client.send_message(QueueUrl=url, MessageBody="x")  # a kept connection to moto is open now
            cp.stop()  # with the client's connection, and the gateway's to moto, still open
        finally:
            client.close()
    wait_until(
        lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
        10,
        "every thread the control plane started to end",
    )


def _long_polls_waiting() -> int:
    """Threads inside a step of moto's long poll now (its ``Queue.wait_for_messages``)."""
    count = 0
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == "wait_for_messages":
                count += 1
                break
            frame = frame.f_back
    return count


def test_stop_cuts_a_long_poll_moto_is_waiting_in() -> None:
    """A receive waiting in moto (up to 20 s) when the control plane stops ends with the stop:
    no server thread outlives it to answer a client that has gone (and to log it after the
    test that started it)."""
    with ControlPlane(pools=("default",)) as cp:
        client, url = leased_sqs(cp)
        threads = [threading.Thread(target=lambda: _ignore_errors(client, url), name="long-poll")]
        threads[0].start()
        try:
            wait_until(lambda: _long_polls_waiting() >= 1, 10, "moto to wait in the long poll")
            server = _moto(cp)
            with server._lock:
                handlers = list(server._handler_threads)
            cp.stop()
            assert not [t for t in handlers if t.is_alive()], "a long poll outlived the stop"
        finally:
            threads[0].join(30)
            client.close()
    assert not threads[0].is_alive()


def _ignore_errors(client: Any, url: str) -> None:
    """A long poll whose server goes away under it: its error is the point, not a failure."""
    with contextlib.suppress(Exception):
        client.receive_message(QueueUrl=url, WaitTimeSeconds=20)
