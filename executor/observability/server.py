"""The HTTP endpoint of the executor: ``/healthz``, ``/readyz`` and ``/metrics``.

A ``ThreadingHTTPServer`` in a thread of its own (no actor inside), so that probes are answered
even while every actor is busy, and a wedged actor shows up as a stuck component (a turn older
than its allowance, read at the request) rather than as a probe that times out. It binds
loopback by default; in a pod it must bind ``0.0.0.0`` for the kubelet's probes
(``REMOTE_EXECUTOR_OBSERVABILITY_HOST``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loguru import logger

from executor.errors import ConfigError
from executor.observability.health import HealthState
from executor.observability.metrics import Metrics
from executor.supervision.threadnames import name_this_thread

DEFAULT_PORT = 9087
"""The port DataHub's executor image uses for Prometheus metrics."""

REQUEST_TIMEOUT_S = 5.0
"""A client that sends nothing for this long is dropped, so it cannot hold a thread."""

THREAD_NAME = "observability-http"
JSON_TYPE = "application/json"
ENDPOINTS = ["/healthz", "/readyz", "/metrics"]


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the state its handlers read."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], health: HealthState, metrics: Metrics | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.health = health
        self.metrics = metrics
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Answers the three GET endpoints; anything else is a 404 or 405."""

    server: _Server
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            status, content_type, body = self._route(path)
        except Exception:
            logger.exception("observability endpoint {} failed", path)
            status, content_type, body = 500, JSON_TYPE, _json({"status": "error"})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            ok, details = self.server.health.liveness()
            return (200 if ok else 503), JSON_TYPE, _json(details)
        if path == "/readyz":
            ok, details = self.server.health.readiness()
            return (200 if ok else 503), JSON_TYPE, _json(details)
        if path == "/metrics" and self.server.metrics is not None:
            return 200, self.server.metrics.content_type, self.server.metrics.render()
        return 404, JSON_TYPE, _json({"status": "not found", "endpoints": ENDPOINTS})

    def log_message(self, format: str, *args: Any) -> None:
        """Probes arrive every few seconds: keep them out of the service log unless debugging."""
        logger.debug("observability {} - " + format, self.address_string(), *args)


def _serve(httpd: _Server, poll_interval_s: float) -> None:
    name_this_thread(THREAD_NAME, "health-http")
    httpd.serve_forever(poll_interval=poll_interval_s)


def _poke(httpd: _Server) -> None:
    """Connect to the server and hang up at once, so that its waiting ``select`` returns."""
    host, port = httpd.server_address[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(str(host), str(host))
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=0.5):
        pass


def _json(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True) + "\n").encode()


class ObservabilityServer:
    """Serves the health and metrics endpoints from a background thread.

    ``port=0`` picks a free port (tests); ``.port`` tells which one after ``start()``.
    ``poll_interval_s`` is how often the serving loop wakes when no probe comes; it is long
    (idle CPU), because ``stop()`` does not wait for it: a connection of its own wakes the loop.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        health: HealthState | None = None,
        metrics: Metrics | None = None,
        poll_interval_s: float = 30.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError("observability.port", [f"must be between 0 and 65535, got {port}"])
        self.host = host
        self._requested_port = port
        self.health = health if health is not None else HealthState()
        self.metrics = metrics
        self._poll_interval_s = poll_interval_s
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one until ``start()``)."""
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Bind and serve; raises ConfigError when the address cannot be bound."""
        if self._httpd is not None:
            raise RuntimeError("observability server already started")
        try:
            self._httpd = _Server((self.host, self._requested_port), self.health, self.metrics)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            where = f"{self.host}:{self._requested_port}"
            raise ConfigError("observability", [f"cannot listen on {where}: {reason}"]) from None
        self._thread = threading.Thread(
            target=_serve, args=(self._httpd, self._poll_interval_s), name=THREAD_NAME, daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and close the socket; safe to call twice or before ``start()``."""
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is None:
            return
        deadline = time.monotonic() + timeout_s
        stopper = threading.Thread(target=httpd.shutdown, name="observability-stop", daemon=True)
        stopper.start()
        while stopper.is_alive() and time.monotonic() < deadline:
            _poke(httpd)  # the loop sees the shutdown request when its select returns
            stopper.join(0.05)
        httpd.server_close()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
