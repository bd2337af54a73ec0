"""A client that hangs up before its answer (an executor's stop cuts its long poll) is routine
for the control plane's servers: no traceback on stderr, and the server serves on."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from executor.local.controlplane.http_base import LoopbackServer

TIMEOUT_S = 10.0


class _Held(BaseHTTPRequestHandler):
    """Answers ``/held`` only once the test says so (by then its client is gone)."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        if self.path == "/held":
            self.server.arrived.set()
            assert self.server.release.wait(TIMEOUT_S)
        body = b"x" * 65536
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for _ in range(4):  # the first write may still succeed; the next ones meet the reset
            self.wfile.write(body)
        if self.path == "/held":
            self.server.answered.set()

    def log_message(self, *_args: object) -> None:
        pass


class _Server(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Held, "held-test")
        self.arrived, self.release, self.answered = threading.Event(), threading.Event(), threading.Event()


def test_a_client_gone_before_its_answer_leaves_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    server = _Server()
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
        client.sendall(b"GET /held HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert server.arrived.wait(TIMEOUT_S)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, as a cut long poll
        server.release.set()
        again = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT_S)
        again.request("GET", "/next")
        assert again.getresponse().status == 200  # the server serves on
        again.close()
    finally:
        server.stop()
    assert not server.answered.is_set()  # the hung-up client's answer did fail on the way
    assert "Traceback" not in capfd.readouterr().err
