"""Kept-alive HTTP connections to the embedded moto server, for the SQS gateway and the dispatch.

A new connection for every call cost a TCP handshake and, in the server, a new thread for every
connection; with the connection kept, a call is one request on a socket moto already serves.
Each user holds its own ``KeptConnection``: a gateway handler thread for as long as its client's
connection lasts (closed with it, so moto's thread for it ends too), the dispatch for the life
of the control plane. Requests carry ``KEEP_ALIVE_HEADER``, the sign ``moto_server`` keeps the
connection open by; other clients of moto (tests inspecting queues) get one connection per call.

Every connection has Nagle off (``TCP_NODELAY``), as moto's accepted sockets have: a request or
an answer never waits for the other side's delayed ACK (about 40 ms). A kept connection that
the server closed (idle, or at its stop) fails on the next request; that request is sent again
once, on a new connection. Were the connection instead cut after moto acted on the request (its
handler dying mid-answer), the resend repeats the call: a duplicate send or a second delete of
one handle, which SQS's at-least-once delivery and the executor's duplicate checks allow for.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Callable

from executor.local.controlplane.http_headers import HeaderError, Headers, read_headers

Answer = tuple[int, list[tuple[str, str]], bytes]
"""Status, headers in order, and the whole body."""

KEEP_ALIVE_HEADER = "X-Controlplane-Keep-Alive"
"""Sent by the control plane's own connections to moto: keep this connection open."""

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
"""How a kept connection that the server closed fails on its next request."""


def no_delay(sock: socket.socket | None) -> None:
    """Turn Nagle's algorithm off on a TCP socket (a no-op for anything else)."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class StrictResponse(http.client.HTTPResponse):
    """``http.client``'s answer with its head read by ``http_headers`` (strict, bounded) instead
    of ``email``'s parser: about 0.06 ms less per answer from moto. The body is read as before."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:  # a 1xx answer's head is skipped, as the standard library does
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            self._head()
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = self._head()  # type: ignore[assignment]
        self._frame(status)

    def _head(self) -> Headers:
        try:
            return read_headers(self.fp.readline)  # type: ignore[union-attr]
        except HeaderError as exc:
            raise http.client.HTTPException(f"bad answer head from moto: {exc.reason}") from None

    def _frame(self, status: int) -> None:
        """Chunked or sized, and whether the connection closes after it (the standard library's
        rules: no length and no chunks means the body ends with the connection)."""
        encoding = self.headers.get("transfer-encoding") or ""
        self.chunked = encoding.lower() == "chunked"  # type: ignore[assignment]
        self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            with contextlib.suppress(ValueError):
                self.length = int(length) if int(length) >= 0 else None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class NoDelayConnection(http.client.HTTPConnection):
    """An HTTP connection with Nagle off, so a small request is never held back, whose answers
    are read by ``StrictResponse``."""

    response_class = StrictResponse

    def connect(self) -> None:
        super().connect()
        no_delay(self.sock)


class KeptConnection:
    """One kept-alive connection, for one thread at a time; ``connect`` makes a new one,
    ``close`` forgets and closes one, and once ``stopping`` is true no new one is made."""

    def __init__(
        self,
        connect: Callable[[], http.client.HTTPConnection],
        close: Callable[[http.client.HTTPConnection], None] = http.client.HTTPConnection.close,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._connect = connect
        self._close = close
        self._stopping = stopping
        self._conn: http.client.HTTPConnection | None = None

    def open(self) -> None:
        """Connect now (the dispatch's connection is made at start, not on the first send)."""
        if self._conn is None:
            self._conn = self._connect()
        self._conn.connect()

    def call(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One request and its whole answer; raises OSError / HTTPException as ``http.client``."""
        reused = self._conn is not None and self._conn.sock is not None
        try:
            return self._exchange(method, path, body, headers)
        except _STALE:
            if not reused or self._stopping():
                raise
        return self._exchange(method, path, body, headers)  # the server had closed the kept one

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._close(conn)

    def _exchange(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        if self._conn is None:
            if self._stopping():
                raise ConnectionAbortedError("stopping: no new connection to moto")
            self._conn = self._connect()
        try:
            self._conn.request(method, path, body=body, headers={**headers, KEEP_ALIVE_HEADER: "1"})
            answer = self._conn.getresponse()
            data = answer.read()
        except BaseException:
            self.close()
            raise
        if answer.will_close:
            self.close()
        return answer.status, answer.getheaders(), data
