"""HTTP calls with a total deadline and a response size cap.

A socket timeout (what ``http.client``, urllib3 and ``requests`` offer) bounds each socket
read: a peer that drips one byte a second never trips it and holds a call for as long as it
likes, status line and headers included. Here every call has phases, as httpx splits them::

    connect_s   one TCP/TLS connect attempt
    total_s     the whole call: connect, sending the body, status line, headers, body
    max_bytes   the (decoded) response body; a bigger answer is abandoned, not buffered

The deadline reaches the socket itself: the connections (``http_pool``) set the socket's
timeout to what is left of the call before every ``recv`` (``DeadlineReader``) and every
``send`` (``send_all``), so no thread is needed to cut a call off.
``read_capped`` decodes a gzip or deflate answer as it streams in, never to more than the cap
(a small compressed answer cannot expand into memory); any other coding fails the call.
"""

from __future__ import annotations

import http.client
import io
import time
import zlib
from dataclasses import dataclass
from typing import Any

from executor.datahub.http_answer import HttpAnswer

CHUNK_BYTES = 64 * 1024

CALL_ERRORS = (OSError, http.client.HTTPException)
"""What a call that got no (whole) answer raises, ``DeadlineExceeded`` and ``OriginRefused``
included (both are ``OSError``); ``TooLarge`` is apart. Callers catch this one tuple."""


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


class OriginRefused(ConnectionError):
    """No call can be made to this origin (a SOCKS proxy, an unreadable CA bundle)."""


class ProxyError(ConnectionError):
    """The proxy could not be reached, or refused the tunnel (the name urllib3 gave it)."""


class TooLarge(Exception):
    """The answer is bigger than the call's ``max_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


def left_of(at: float | None, timeout: float | None) -> float | None:
    """The socket timeout for the next step: what is left until ``at``, at most ``timeout``."""
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the call's deadline passed")
    return left if timeout is None else min(left, timeout)


def late(at: float | None, doing: str) -> DeadlineExceeded | None:
    """After a socket timeout: ``DeadlineExceeded`` when it was the call's deadline that passed
    (the caller raises it), None when it was the step's own timeout (``connect_s``)."""
    if at is not None and time.monotonic() >= at:
        return DeadlineExceeded(f"the call's deadline passed while {doing}")
    return None


def send_all(sock: Any, data: bytes | bytearray | memoryview, at: float,
             timeout: float | None = None) -> None:
    """All of ``data`` on ``sock`` before ``at``, one ``send`` at a time, each waiting at most what
    is left. ``socket.sendall`` and ``SSLSocket.send`` already bound one call by one timeout; the
    loop makes it hold for any socket-like one (``TlsInTls`` bounds each record by its own
    deadline), and a passed deadline is ``DeadlineExceeded`` as on the read side."""
    view = memoryview(data)
    while view:
        sock.settimeout(left_of(at, timeout))
        try:
            sent = sock.send(view)
        except TimeoutError:
            if (passed := late(at, "sending")) is not None:
                raise passed from None
            raise
        view = view[sent:]


class DeadlineReader(io.RawIOBase):
    """A socket's read side for one answer: every ``recv`` waits at most until ``at``.

    Closing it leaves the socket open (the connection may be kept for the next call), as
    ``socket.makefile`` does for ``http.client``.
    """

    def __init__(self, sock: Any, at: float | None, timeout: float | None) -> None:
        super().__init__()
        self._sock, self._at, self._timeout = sock, at, timeout
        self.resting = False
        """True once the answer is read: no more ``recv`` (a read returns "nothing yet")."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        if self.resting:
            return None
        if self._at is not None:
            self._sock.settimeout(left_of(self._at, self._timeout))
        try:
            return int(self._sock.recv_into(buffer))
        except TimeoutError:
            if (passed := late(self._at, "reading the answer")) is not None:
                raise passed from None
            raise


def response_on(sock: Any, method: str, at: float | None, timeout: float | None) -> HttpAnswer:
    """The answer about to arrive on ``sock`` (status line and headers read), bounded by ``at``."""
    return HttpAnswer(io.BufferedReader(DeadlineReader(sock, at, timeout)), method)


def read_capped(response: HttpAnswer, max_bytes: int) -> bytes:
    """The decoded body, streamed and counted; ``TooLarge`` as soon as it exceeds ``max_bytes``.

    A declared ``Content-Length`` above the cap is refused before a byte is read (a chunked
    body's is ignored, as its framing is). A gzip or
    deflate body is inflated piece by piece, each piece to at most what the cap leaves.
    """
    if response.length is not None and response.length > max_bytes:
        raise TooLarge(max_bytes)
    decoder = _decoder(response.getheader("Content-Encoding", ""))
    body = bytearray()
    while chunk := response.read(CHUNK_BYTES):
        body += chunk if decoder is None else decoder.feed(chunk, max_bytes + 1 - len(body))
        if len(body) > max_bytes:
            raise TooLarge(max_bytes)
    if decoder is not None:
        body += decoder.feed(b"", max_bytes + 1 - len(body))
        if len(body) > max_bytes:
            raise TooLarge(max_bytes)
    response.will_close = response.will_close or overran(response)
    return bytes(body)


def overran(response: HttpAnswer) -> bool:
    """Whether bytes past the (wholly read) answer were read off the socket with it: a server
    that sent more than its ``Content-Length``, bytes after the last chunk. Kept on the
    connection they would be read as the next call's answer, so it must be closed. Only the
    reader's buffer is looked at: its socket is not read again."""
    raw = response.file.raw
    if not isinstance(raw, DeadlineReader):
        raise TypeError("an answer read by response_on was expected")
    raw.resting = True
    return bool(response.file.peek(1))


class _Inflater:
    """gzip (members one after another) or deflate (zlib-wrapped, or raw as some servers send
    it), as urllib3 decoded them; never more out of one call than ``room``."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._first = True
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate ``data`` (b"": what is left); ``room`` + 1 bytes out means too large."""
        out = bytearray()
        while room > 0:
            try:
                piece = self._zlib.decompress(data, room)
            except zlib.error:
                if self._gzip or not self._first:
                    raise http.client.HTTPException("the answer's deflate encoding is broken") from None
                self._zlib, self._first = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            self._first = False
            out += piece
            room -= len(piece)
            data = self._zlib.unconsumed_tail
            if self._zlib.eof and self._zlib.unused_data and self._gzip:
                data = self._zlib.unused_data  # another gzip member follows
                self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif not data:
                break
        return bytes(out)


def _decoder(encoding: str) -> _Inflater | None:
    """The answer's decoder: none for no coding, gzip or deflate (what the client asks for);
    any other (br, zstd, compress, codings stacked) is refused rather than passed on as the
    body (compressed bytes read as JSON or as an SQS answer)."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return _Inflater(gzip=True)
    if name == "deflate":
        return _Inflater(gzip=False)
    raise http.client.HTTPException(f"unsupported Content-Encoding {name[:40]!r}")
