"""The HTTP server in front of moto's WSGI app: kept-alive connections, one write per answer.

werkzeug's development server, which ``moto_server`` uses, closes the connection after every
answer (``Connection: close``), so each SQS call the gateway relays and each dispatch paid a new
TCP connection and a new server thread, and werkzeug's request handling on top: about 0.7 ms of
the control plane's CPU per call besides moto's own work. This server is ``LoopbackServer`` with a
small WSGI handler: ``TCP_NODELAY``, the body read by ``Content-Length`` (SQS and STS clients
send no chunked bodies), and the whole answer, headers and body, in one write with an exact
``Content-Length``. A connection is kept open only for the control plane's own clients (the
gateway's and the dispatch's, ``upstream.KEEP_ALIVE_HEADER``); one idle for 300 s (beyond the
gateway's own client idle time) is closed, so no caller holds a server thread forever. Anyone
else (a test inspecting a queue with boto3) gets ``Connection: close`` after each answer, as
from werkzeug, so no server thread outlives its caller's call; unless ``keep_alive_all`` (a
control plane whose executors talk to moto directly, ``direct_sqs_pools``): then every
connection is kept as SQS keeps it, so no client of moto pays a new connection per call.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from loguru import logger

from executor.local.controlplane.http_base import JsonHandler, LoopbackServer
from executor.local.controlplane.moto_sqs import LongPollCut, serving
from executor.local.controlplane.upstream import KEEP_ALIVE_HEADER

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_NOT_RELAYED = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})


def _wsgi_str(value: str) -> str:
    """PEP 3333's native strings: the UTF-8 bytes read as latin-1 (what werkzeug hands moto)."""
    return value.encode("utf-8").decode("latin-1")


class MotoServer(LoopbackServer):
    """Serves ``app`` (moto's dispatcher) on ``host``, ephemeral port."""

    def __init__(self, host: str, app: WsgiApp, keep_alive_all: bool = False) -> None:
        super().__init__((host, 0), WsgiHandler, "controlplane-moto")
        self.app = app
        self.keep_alive_all = keep_alive_all
        """Keep every client's connection, not only the control plane's own."""


class WsgiHandler(JsonHandler):
    """One request to the WSGI app, answered in one write."""

    server: MotoServer
    wbufsize = 64 * 1024
    """Buffered: the handler flushes once after each request."""
    timeout = 300
    """Seconds a kept connection may wait for its next request (the control plane's own clients
    close theirs sooner; a dispatch's closed connection is replaced). A long poll inside moto is
    not a socket wait, so it is never cut by this."""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet, as werkzeug's log was: the gateway's and the GMS's request logs say enough."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        body = self.read_body()
        if body is None:
            return
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer[:] = [status, headers]
            return chunks.append

        chunks: list[bytes] = []
        serving(lambda: self.server.stopping)
        try:
            result = self.server.app(self._environ(body), start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except LongPollCut:  # the server stops: its clients' connections are being cut
            self.close_connection = True
            return
        except Exception as exc:  # moto answers its own errors; this is a bug in it
            path = self.path.partition("?")[0]  # a presigned query carries credentials
            logger.warning("moto failed on {} {}: {}", self.command, path, type(exc).__name__)
            self.send_json(500, {"message": "internal error in moto"})
            return
        self._answer(str(answer[0]), answer[1], b"".join(chunks))

    def _answer(self, status: str, headers: list[tuple[str, str]], data: bytes) -> None:
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason or None)
        for key, value in headers:
            if key.lower() not in _NOT_RELAYED:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        if not (self.server.keep_alive_all or self.headers.get(KEEP_ALIVE_HEADER)):
            self.close_connection = True
        if self.close_connection:  # also when the client asked for it
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": _wsgi_str(unquote(path)),
            "QUERY_STRING": _wsgi_str(query),
            "REQUEST_URI": _wsgi_str(self.path),
            "RAW_URI": _wsgi_str(self.path),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": self.client_address[1],
            "SERVER_NAME": self.server.host,
            "SERVER_PORT": str(self.server.port),
            "SERVER_PROTOCOL": self.request_version,
        }
        for key, value in self.headers.items():
            if "_" in key:  # as werkzeug: X_Foo could otherwise pass for X-Foo
                continue
            name = key.upper().replace("-", "_")
            if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                name = "HTTP_" + name
            value = value.replace("\r\n", "")
            environ[name] = f"{environ[name]},{value}" if name in environ else value
        return environ
