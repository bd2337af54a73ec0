"""A small threaded HTTP server that can really stop, and a handler base with JSON helpers.

``ThreadingHTTPServer`` leaves keep-alive connections and their threads running after
``shutdown()``. ``LoopbackServer`` tracks every connection and thread, shuts the sockets
down on ``stop()`` and joins the threads with a deadline, so a test that stops a control plane
leaves nothing behind. Its serving loop wakes only every ``IDLE_WAKE_S`` with no request (three
servers polling every 20 ms cost 0.7 % of a core at rest); ``stop()`` wakes it with a connection
of its own. Used by the GMS API, the SQS gateway and the server in front of moto.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loguru import logger

from executor.local.controlplane.http_headers import (
    HeaderError,
    check_request_framing,
    parse_request_line,
    read_headers,
)

IDLE_WAKE_S = 30.0
"""How often the serving loop wakes with no request; ``stop()`` does not wait for it."""
STOP_LOOP_S = 5.0
"""How long ``stop()`` keeps waking the serving loop until it has ended."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest request body read: a ``datahub-rest`` sink's MCP batches and a result aspect
(at most 15,368,520 characters of report, JSON-escaped) fit well below it."""


class LoopbackServer(ThreadingHTTPServer):
    """Threaded HTTP server with tracked connections; ``start()`` serves it in a thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], name: str) -> None:
        super().__init__(address, handler)
        self.name = name
        self.host = address[0]
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._serve_thread: threading.Thread | None = None
        self.stopping = False
        self.stop_hooks: list[Callable[[], None]] = []
        """Called during ``stop()`` after new connections stop, e.g. to cut upstream calls."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer was written (an executor's stop cuts its
        long poll) is routine: one debug line, not socketserver's traceback on stderr."""
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, ConnectionReset, ...
            logger.debug("{}: the client {} went away before its answer", self.name, client_address)
            return
        super().handle_error(request, client_address)

    @property
    def port(self) -> int:
        """The bound port (ephemeral when 0 was asked for)."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of this server."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._serve_thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": IDLE_WAKE_S}, name=f"{self.name}-serve",
            daemon=True,
        )
        self._serve_thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
            self._handler_threads.add(threading.current_thread())
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.discard(request)
                self._handler_threads.discard(threading.current_thread())

    def _end_serving(self) -> None:
        """``shutdown()`` from a helper thread while connections of our own wake the loop."""
        stopper = threading.Thread(target=self.shutdown, name=f"{self.name}-stop", daemon=True)
        stopper.start()
        deadline = time.monotonic() + STOP_LOOP_S
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        while stopper.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host, self.port), timeout=0.5):
                pass  # the loop sees the shutdown request once its select returns
            stopper.join(0.05)
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, cut open connections, join handler threads (bounded), close."""
        self.stopping = True
        if self._serve_thread is not None:
            self._end_serving()
        for hook in self.stop_hooks:
            hook()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler base: HTTP/1.1 keep-alive, strict bounded heads (``http_headers``; the
    standard library's ``email`` parser cost about 0.1 ms a request), bounded bodies, JSON
    answers, quiet logs.

    Subclasses check who is asking *before* ``read_body`` (a stranger's body is never read)
    and answer such requests with ``refuse``, which closes the connection, since the unread
    body would otherwise be taken for the next request.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """An answer leaves as two writes (headers, then body): with Nagle on, the body waited for
    the client's delayed ACK, about 40 ms per GMS call (the SQS gateway had the same)."""
    timeout = 120
    server_version = "remote-executor-controlplane"
    sys_version = ""
    max_body_bytes = MAX_BODY_BYTES
    raw_requestline: bytes
    """Set by ``handle_one_request`` before ``parse_request`` (not in typeshed's stub)."""

    def parse_request(self) -> bool:
        """The request line and headers (``http_headers``: strict, bounded, no ``email`` parser),
        then the standard library's keep-alive and ``Expect: 100-continue`` rules. False once
        an error answer was sent (the connection then closes)."""
        self.command = None  # type: ignore[assignment]  # as the standard library, until known
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "latin-1").rstrip("\r\n")
        if not self.requestline.strip():
            return False
        try:
            command, path, version, number = parse_request_line(self.raw_requestline)
        except HeaderError as exc:
            self.request_version = self.protocol_version  # answered with a status line, not a bare body
            self.send_error(exc.status, exc.reason)
            return False
        self.request_version = version
        if number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        # as the standard library (gh-87389): "//host" in a Location would leave this server
        self.command, self.path = command, ("/" + path.lstrip("/")) if path.startswith("//") else path
        try:
            self.headers = read_headers(self.rfile.readline)  # type: ignore[assignment]
            check_request_framing(self.headers)  # type: ignore[arg-type]
        except HeaderError as exc:
            self.send_error(exc.status, exc.reason)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and self.protocol_version >= "HTTP/1.1" and number >= (1, 1):
            return self.handle_expect_100()
        return True

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 413 itself (body unread). A request with a
        ``Transfer-Encoding`` never gets here (``check_request_framing``)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > self.max_body_bytes:
            self.refuse(413, {"message": f"bad Content-Length, or a body over {self.max_body_bytes} bytes"})
            return None
        return self.rfile.read(length) if length else b""

    def refuse(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        """Answer without reading the request's body, and close the connection after it."""
        self.close_connection = True
        self.send_json(status, payload, {**(headers or {}), "Connection": "close"})

    def send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        """Answer with a JSON body."""
        self.send_bytes(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def send_bytes(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer with ``body`` and an exact Content-Length (keep-alive safe)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Route access logs to loguru at debug level (paths carry no secrets; headers do)."""
        logger.debug("{} {}", self.address_string(), format % args)
