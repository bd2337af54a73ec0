"""A small HTTP forward proxy for tests: CONNECT tunnels and plain-HTTP absolute-URI requests.

It serves on loopback, carries traffic to loopback targets only (anything else gets 403, so
nothing a test starts can leave the host through it), accepts a bounded number of
connections, and records what it carried: ``(kind, "host:port", path)`` where kind is
``CONNECT`` or the HTTP method (path is empty for tunnels). ``stop()`` cuts every connection
and joins every thread it started (``LoopbackServer`` tracks them).

Plain-HTTP requests are forwarded one at a time over a fresh upstream connection and answered
with an exact Content-Length, so clients may keep their connection to the proxy alive.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import selectors
import socket
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from executor.local.controlplane.http_base import LoopbackServer

HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
     "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)
UPSTREAM_TIMEOUT_S = 60.0
"""Above SQS's 20 s long poll."""
MAX_BODY = 64 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (v4 and v6)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConnectProxy(LoopbackServer):
    """The proxy server; ``url`` is what ``HTTP(S)_PROXY`` or ``proxy:`` should name."""

    def __init__(self, max_connections: int = 32) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler, "test-proxy")
        self.max_connections = max_connections
        self._record_lock = threading.Lock()
        self._carried: list[tuple[str, str, str]] = []
        self._refused: list[str] = []

    def __enter__(self) -> ConnectProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse (close) a connection beyond ``max_connections``."""
        with self._lock:
            return len(self._connections) < self.max_connections

    def record(self, kind: str, target: str, path: str = "") -> None:
        with self._record_lock:
            self._carried.append((kind, target, path))

    def refuse(self, target: str) -> None:
        with self._record_lock:
            self._refused.append(target)

    @property
    def carried(self) -> list[tuple[str, str, str]]:
        """Everything carried so far, in order."""
        with self._record_lock:
            return list(self._carried)

    @property
    def refused(self) -> list[str]:
        """Targets refused (not loopback)."""
        with self._record_lock:
            return list(self._refused)

    def targets(self) -> set[str]:
        """The distinct ``host:port`` targets carried."""
        return {target for _, target, _ in self.carried}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120
    server: ConnectProxy

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _answer(self, status: int, message: str) -> None:
        body = message.encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_CONNECT(self) -> None:
        host, _, port_text = self.path.rpartition(":")
        host = host.strip("[]")
        if not is_loopback(host) or not port_text.isdigit():
            self.server.refuse(self.path)
            self._answer(403, "this test proxy carries loopback traffic only")
            return
        try:
            upstream = socket.create_connection((host, int(port_text)), timeout=10)
        except OSError as exc:
            self._answer(502, f"cannot reach {self.path}: {exc}")
            return
        self.server.record("CONNECT", f"{host}:{port_text}")
        self.close_connection = True
        with upstream:
            self.send_response_only(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            _relay(self.connection, upstream, self.server)

    def _forward(self) -> None:
        parts = urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname:
            self._answer(400, "absolute http:// URIs only (use CONNECT for https)")
            return
        target = f"{parts.hostname}:{parts.port or 80}"
        if not is_loopback(parts.hostname):
            self.server.refuse(target)
            self._answer(403, "this test proxy carries loopback traffic only")
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._answer(411, "send Content-Length")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else None
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.server.record(self.command, target, path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=UPSTREAM_TIMEOUT_S)
        try:
            upstream.request(self.command, path or "/", body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._answer(502, f"upstream {target} failed: {exc}")
            return
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_HEADERS:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward


def _relay(client: socket.socket, upstream: socket.socket, server: ConnectProxy) -> None:
    """Copy bytes both ways until either side closes or the proxy stops."""
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        while not server.stopping:
            for key, _ in selector.select(timeout=0.2):
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    chunk = source.recv(65536)
                except OSError:
                    return
                if not chunk:
                    with contextlib.suppress(OSError):
                        key.data.shutdown(socket.SHUT_WR)
                    return
                try:
                    key.data.sendall(chunk)
                except OSError:
                    return
