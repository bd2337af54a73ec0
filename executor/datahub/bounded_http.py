"""HTTP calls with a total deadline and a response size cap, on top of ``urllib3``.

``urllib3`` (and ``requests`` on it) only knows a connect timeout and a timeout *per socket
read*: a peer that drips one byte a second never trips the latter and holds a call for as long
as it likes, status line and headers included. Here every call has phases, as httpx splits them::

    connect_s   one TCP/TLS connect attempt
    total_s     the whole call: connect, sending the body, status line, headers, body
    max_bytes   the (decoded) response body; a bigger answer is abandoned, not buffered

The deadline reaches the socket itself: the pools here (``POOLS``) build their connections with
a response class whose reads (and a request whose writes) set the socket's timeout to what is
left of the call before every ``recv``/``sendall``, so no thread is needed to cut a call off.
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import BaseHTTPResponse

CHUNK_BYTES = 64 * 1024
_local = threading.local()


@dataclass(frozen=True)
class CallLimits:
    """How long one call may take and how much it may bring back."""

    total_s: float
    connect_s: float
    max_bytes: int

    def __post_init__(self) -> None:
        if not 0 < self.connect_s <= self.total_s:
            raise ValueError("need 0 < connect_s <= total_s")
        if self.max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")


class DeadlineExceeded(TimeoutError):
    """The call's total deadline passed (raised from inside a socket read or write)."""


class TooLarge(Exception):
    """The answer is bigger than the call's ``max_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


@contextmanager
def deadline(total_s: float) -> Iterator[float]:
    """Bound every socket read and write of this thread's calls to ``total_s`` from now."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + total_s
    try:
        yield _local.deadline
    finally:
        _local.deadline = previous


def _left() -> float | None:
    """Seconds left of this thread's current call, None outside ``deadline()``."""
    at: float | None = getattr(_local, "deadline", None)
    if at is None:
        return None
    left = at - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the call's deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    """A socket's read side whose every ``recv`` waits at most until the call's deadline."""

    def __init__(self, sock: socket.socket, raw: io.RawIOBase, at: float) -> None:
        super().__init__()
        self._sock, self._raw, self._at = sock, raw, at
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def readinto(self, buffer: Any) -> int | None:
        left = self._at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the call's deadline passed while reading the answer")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))
        try:
            return self._raw.readinto(buffer)
        finally:
            self._sock.settimeout(self._timeout)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """``http.client``'s response, reading through ``_DeadlineReader`` inside ``deadline()``."""

    def __init__(self, sock: Any, debuglevel: int = 0, method: str | None = None, url: str | None = None):
        super().__init__(sock, debuglevel, method, url)
        at: float | None = getattr(_local, "deadline", None)
        if at is not None and isinstance(sock, socket.socket):
            raw = self.fp.detach()  # detached, so dropping the old buffer does not close it
            self.fp = io.BufferedReader(_DeadlineReader(sock, raw, at))  # type: ignore[arg-type]


class _DeadlineSendMixin:
    """Writes of the request wait at most until the call's deadline (``sendall`` is bounded
    as a whole by the socket timeout since Python 3.5), and the request's head goes out in one
    write with the first piece of its body.

    urllib3 sends the head (``endheaders``) and then each piece of the body apart, so every
    call with a body took two ``sendall``: two TCP segments, and on loopback (GMS beside the
    executor) the receiver's TCP work runs in the sender's system call, about 0.1 ms of the
    calling thread's CPU each. The head is held until the first piece and sent with it, as
    ``http.client`` itself does for a ``bytes`` body.
    """

    sock: socket.socket | None
    _head: bytes | None = None
    _join_head = False
    """Set while a request with a body goes out on a connection already open."""
    _holding = False

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> None:
        """urllib3's request, the head joined to the body's first piece (a request without a
        body, or on a connection it opens now, goes as before)."""
        self._join_head = body is not None and self.sock is not None
        try:
            super().request(method, url, body, headers, **kw)  # type: ignore[misc]
            head, self._head = self._head, None
            if head is not None:  # an empty body: the head alone
                self._send(head)
        finally:
            self._join_head, self._head = False, None

    def endheaders(self, message_body: Any = None, *, encode_chunked: bool = False) -> None:
        self._holding = self._join_head
        try:
            super().endheaders(message_body, encode_chunked=encode_chunked)  # type: ignore[misc]
        finally:
            self._holding = False

    def send(self, data: Any) -> None:
        if self._holding and self._head is None and isinstance(data, bytes):
            self._head = data  # the head: it goes with the body's first piece
            return
        head, self._head = self._head, None
        if head is not None and isinstance(data, bytes | bytearray | memoryview) and len(data) <= CHUNK_BYTES:
            data = head + data
        elif head is not None:
            self._send(head)  # a large piece (never copied to join it) or a file: the head first
        self._send(data)

    def _send(self, data: Any) -> None:
        left = _left()
        if left is None or self.sock is None:
            super().send(data)  # type: ignore[misc]
            return
        before = self.sock.gettimeout()
        self.sock.settimeout(left if before is None else min(left, before))
        try:
            super().send(data)  # type: ignore[misc]
        finally:
            if self.sock is not None:
                self.sock.settimeout(before)


class _Connection(_DeadlineSendMixin, HTTPConnection):
    response_class = _DeadlineResponse  # type: ignore[assignment]


class _TlsConnection(_DeadlineSendMixin, HTTPSConnection):
    response_class = _DeadlineResponse  # type: ignore[assignment]


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


POOLS = {"http": _Pool, "https": _TlsPool}
"""urllib3's ``pool_classes_by_scheme`` for a ``PoolManager``/``ProxyManager`` whose calls
honour ``deadline()``: direct, forwarded through an HTTP proxy, or tunnelled (the CONNECT's
answer is read by the same response class)."""


def read_capped(response: BaseHTTPResponse, max_bytes: int) -> bytes:
    """The decoded body, streamed and counted; ``TooLarge`` as soon as it exceeds ``max_bytes``.

    A declared ``Content-Length`` above the cap is refused before a byte is read.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(max_bytes)
    body = bytearray()
    while chunk := response.read(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(max_bytes)
    return bytes(body)
