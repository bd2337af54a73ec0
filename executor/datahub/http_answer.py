"""An HTTP/1.1 answer read off a connection: status line, headers, and a body to stream.

Why not ``http.client.HTTPResponse``: its header parse goes through the ``email`` package
(a feed parser, a policy object, a header object per line), about a third of a short call's
client CPU here (``bench/sqs_calls.py --profile``). The answers the executor reads (GMS's, SQS's,
a proxy's to CONNECT) need much less: the status, a case-insensitive look-up, and the body's
framing (``Content-Length``, chunked, or until the peer closes). The limits are
``http.client``'s (a line of at most 64 KiB, 100 headers), its exception classes are raised
(``bounded_http.CALL_ERRORS`` covers them), and every read goes through the caller's file,
whose reads the call's deadline bounds.
"""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterable, Iterator, Mapping

MAX_LINE = 65536
MAX_HEADERS = 100
_NO_BODY = frozenset({204, 304})


class Headers(Mapping[str, str]):
    """An answer's headers, looked up case-insensitively (a repeated one: its values joined)."""

    __slots__ = ("_by_name",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        by_name: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            by_name[key] = f"{by_name[key]}, {value}" if key in by_name else value
        self._by_name = by_name

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


class HttpAnswer:
    """One answer on ``file``: ``status``, ``reason``, ``headers`` read at once; ``read`` the body.

    ``will_close``: the connection cannot carry another call after this answer (the peer
    said so, HTTP/1.0, or the body runs until the peer closes).
    """

    def __init__(self, file: io.BufferedReader, method: str) -> None:
        self.file = file
        """What the answer is read from (``bounded_http.overran`` looks at what it holds)."""
        while True:
            version, self.status, self.reason, lines = _head(file)
            self.headers = Headers(_parsed(lines))
            if self.status == 101:
                raise http.client.HTTPException("the server switched protocols (101), unasked")
            if self.status >= 200:
                break  # 1xx (100 Continue): its own headers, then the real answer
        tokens = (self.headers.get("connection") or "").lower()
        self.will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        self.length: int | None = None
        """The declared ``Content-Length`` of a body framed by it, else None."""
        self._left: int | None = 0
        """Body bytes still to read (of the current chunk when chunked); None: until close."""
        self._done = method in ("HEAD", "CONNECT") or self.status in _NO_BODY
        self._chunked = False
        if not self._done:
            self._frame_body()

    def _frame_body(self) -> None:
        """How the body ends (RFC 9112 6.3): chunked only when it is the last coding (then a
        ``Content-Length`` beside it is ignored, and the connection closed after: a possible
        smuggling attempt); any other coding runs until close; else the declared length."""
        te = self.headers.get("transfer-encoding") or ""
        codings = [c.strip() for c in te.lower().split(",") if c.strip()]
        if codings:
            self._chunked = codings[-1] == "chunked"
            self.will_close = self.will_close or not self._chunked or "content-length" in self.headers
            self._left = 0 if self._chunked else None
        elif (declared := self.headers.get("content-length")) is not None:
            self.length = self._left = _length(declared)
            self._done = self._left == 0
        else:
            self._left, self.will_close = None, True

    def getheader(self, name: str, default: str = "") -> str:
        """A header's value, ``default`` without it."""
        return self.headers.get(name) or default

    def read(self, amount: int) -> bytes:
        """Up to ``amount`` bytes of the body; b"" once it is all read."""
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunked(amount)
        if self._left is None:
            data = self.file.read1(amount)
            self._done = not data
            return data
        data = self.file.read(min(amount, self._left))
        if not data:
            raise http.client.IncompleteRead(b"", self._left)
        self._left -= len(data)
        self._done = self._left == 0
        return data

    def _read_chunked(self, amount: int) -> bytes:
        if not self._left:
            size = _chunk_size(_line(self.file))
            if size == 0:
                for _ in _header_lines(self.file):  # trailers, read to keep the connection usable
                    pass
                self._done = True
                return b""
            self._left = size
        assert self._left is not None
        data = self.file.read(min(amount, self._left))
        if not data:
            raise http.client.IncompleteRead(b"", self._left)
        self._left -= len(data)
        if not self._left and _line(self.file) not in (b"\r\n", b"\n"):
            raise http.client.HTTPException("a chunk does not end with CRLF")
        return data


def _line(file: io.BufferedReader) -> bytes:
    line = file.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise http.client.LineTooLong("header line")
    return line


def _head(file: io.BufferedReader) -> tuple[str, int, str, list[str]]:
    """The status line's version, code and reason, and the header lines (not yet parsed).

    The usual answer's whole head is already in the reader's buffer: it is taken in one read
    and split once. Otherwise (a head larger than the buffer, not yet all arrived, or lines
    ending in a bare LF) it is read line by line, each line at most ``MAX_LINE``.
    """
    buffered = file.peek(1)
    end = buffered.find(b"\r\n\r\n")
    if end >= 0:
        first, *lines = file.read(end + 4)[:end].decode("iso-8859-1").split("\r\n")
    else:
        first = _line(file).decode("iso-8859-1").rstrip("\r\n")
        lines = list(_header_lines(file))
    if not first:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    if "\n" in first or "\r" in first:  # a bare-LF head, a CRLF CRLF further on (in the body)
        raise http.client.BadStatusLine(first[:100])
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3:
        raise http.client.BadStatusLine(first[:100])
    status = number(code, most=3)
    if status < 100:
        raise http.client.BadStatusLine(first[:100])
    return version, status, reason.strip(), lines


def _header_lines(file: io.BufferedReader) -> Iterator[str]:
    """The header block's lines up to its empty line, read one by one."""
    for _ in range(MAX_HEADERS + 2):
        line = _line(file)
        if line in (b"\r\n", b"\n", b""):
            return
        yield line.decode("iso-8859-1").rstrip("\r\n")
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


def _parsed(lines: list[str]) -> list[tuple[str, str]]:
    """``(name, value)`` of each header line; a folded line continues the one before it."""
    if len(lines) > MAX_HEADERS:
        raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
    found: list[tuple[str, str]] = []
    for text in lines:
        if text[:1] in (" ", "\t") and found:
            name, value = found[-1]
            found[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip() or "\n" in text or "\r" in text:
            raise http.client.HTTPException(f"malformed header line {text[:60]!r}")
        found.append((name, value.strip()))
    return found


def _length(declared: str) -> int:
    """``Content-Length``: one number, or copies of the same one ("3, 3", RFC 9110 8.6, also
    what two headers joined by ``Headers`` give); different values are refused."""
    if "," not in declared:
        return number(declared.strip())
    found = {number(part.strip()) for part in declared.split(",")}
    if len(found) != 1:
        raise http.client.HTTPException("the answer declares different Content-Length values")
    return found.pop()


def _chunk_size(line: bytes) -> int:
    return number(line.split(b";", 1)[0].strip().decode("iso-8859-1"), base=16, most=16)


def number(text: str, base: int = 10, most: int = 19) -> int:
    """A length or code from an answer: ASCII digits of ``base`` only, at most ``most`` of them.

    Why not ``str.isdigit`` and ``int``: the head is decoded as ISO-8859-1, where ``isdigit``
    accepts "\u00b2" that ``int`` refuses with ``ValueError``, and ``int`` refuses more than
    4300 decimal digits the same way; ``ValueError`` is no call error and would reach the actor.
    """
    if 0 < len(text) <= most and text.isascii() and text.isalnum():
        try:
            return int(text, base)
        except ValueError:
            pass
    raise http.client.HTTPException(f"invalid number {text[:20]!r} in the answer")
