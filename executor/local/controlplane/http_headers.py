"""A small, strict HTTP/1.1 header reader for the control plane's servers and its client to moto.

The standard library reads a header block with ``email``'s parser (``http.client.parse_headers``,
for ``BaseHTTPRequestHandler.parse_request`` and for ``http.client``'s answers): about 0.1 ms a
request, and ten requests go through the control plane per executor task (the GMS calls, the
gateway's and moto's side of each SQS call). HTTP/1.1 headers need far less: one line each,
``name: value``. This reader takes lines from a buffered stream and keeps the few lookups the
handlers make (``get``, ``in``, ``items``), case-insensitive, in arrival order.

Strict where the standard library is lenient, as RFC 9112 asks of a server: a line longer than
``MAX_LINE`` or more than ``MAX_HEADERS`` lines are refused with 431; a folded line
(obs-fold), a name that is not a token or has space before its colon, a control character in a
value, a block cut off by the end of the stream, two different ``Content-Length`` values and
one that is not plain digits with 400; a whole block over ``MAX_HEAD`` with 431. A request's
``Transfer-Encoding`` is refused (``check_request_framing``): no chunked request bodies here.
An error's text never holds a header's content (an ``Authorization`` may be read).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

MAX_LINE = 65536
"""Bytes in one header line, as the standard library allows."""
MAX_HEADERS = 100
"""Header lines in one block, as the standard library allows."""
MAX_HEAD = 65536
"""Bytes in one whole header block: the lines' bound alone would let 100 of 64 KiB through."""
_LENGTH = re.compile(rb"[0-9]+")
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
"""What a header's name and value may hold (RFC 9110's token; visible characters, space, tab
and obs-text); ``bytes.translate`` deletes them, so anything left is refused (faster than a
regular expression per line)."""


class HeaderError(ValueError):
    """A header block to refuse: ``status`` (400 or 431) and a reason without its content."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Headers:
    """A header block: case-insensitive lookups (the first value of a name), every line in order."""

    __slots__ = ("_first", "_lines")

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        self._lines = lines
        self._first: dict[str, str] = {}
        for name, value in lines:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, else ``default``."""
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        wanted = name.lower()
        return [value for key, value in self._lines if key.lower() == wanted]

    def __getitem__(self, name: str) -> str | None:
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def items(self) -> list[tuple[str, str]]:
        """Every line as ``(name, value)``, in arrival order (a repeated name repeats)."""
        return list(self._lines)

    def keys(self) -> list[str]:
        return [name for name, _ in self._lines]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._lines)

    def __str__(self) -> str:
        return "".join(f"{name}: {value}\r\n" for name, value in self._lines) + "\r\n"


def read_headers(readline: Callable[[int], bytes]) -> Headers:
    """Read a header block up to its empty line from ``readline`` (a buffered stream's)."""
    lines: list[tuple[str, str]] = []
    size = 0
    while True:
        line = readline(MAX_LINE + 1)
        size += len(line)
        if len(line) > MAX_LINE:
            raise HeaderError(431, "Line too long")
        if size > MAX_HEAD:
            raise HeaderError(431, "Header block too large")
        if line in (b"\r\n", b"\n"):
            break
        if len(lines) >= MAX_HEADERS:
            raise HeaderError(431, "Too many headers")
        lines.append(parse_line(line))
    lengths = {value for name, value in lines if name.lower() == "content-length"}
    if len(lengths) > 1:
        raise HeaderError(400, "Conflicting Content-Length headers")
    if any(not _LENGTH.fullmatch(value.encode("latin-1")) for value in lengths):
        raise HeaderError(400, "Bad Content-Length")  # no sign, no '_', no space, no list
    return Headers(lines)


def check_request_framing(headers: Headers) -> None:
    """A request's body is framed by ``Content-Length`` alone: these servers read no chunked
    bodies, so any ``Transfer-Encoding`` is refused (with ``Content-Length`` too: 400, the
    request smuggling shape RFC 9112 lets a server reject; plain ``chunked``: 411, send a
    length; any other coding: 501), never read past as if the length framed it."""
    if "transfer-encoding" not in headers:
        return
    if "content-length" in headers:
        raise HeaderError(400, "Transfer-Encoding with Content-Length")
    if [value.lower() for value in headers.get_all("transfer-encoding")] == ["chunked"]:
        raise HeaderError(411, "Chunked bodies are not supported; send Content-Length")
    raise HeaderError(501, "Transfer-Encoding not supported")


def parse_line(line: bytes) -> tuple[str, str]:
    """One ``name: value`` line (with its line end) as strings; the value without its spaces."""
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    else:
        raise HeaderError(400, "Header block cut short")
    if line[:1] in (b" ", b"\t"):
        raise HeaderError(400, "Folded header line")
    name, colon, value = line.partition(b":")
    if not colon or not name or name.translate(None, _TOKEN_BYTES):
        raise HeaderError(400, "Malformed header line")
    value = value.strip(b" \t")
    if value.translate(None, _VALUE_BYTES):
        raise HeaderError(400, "Control character in a header value")
    return name.decode("ascii"), value.decode("latin-1")


_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")


def parse_request_line(raw: bytes) -> tuple[str, str, str, tuple[int, int]]:
    """``METHOD target HTTP/x.y`` (its line end stripped already or not): the method, the target,
    the version and its numbers. One space between the three, as RFC 9112 writes them; no
    HTTP/0.9 (two words), no version from 2 on (505), nothing else in the target."""
    line = raw.decode("latin-1").rstrip("\r\n")
    words = line.split(" ")
    if len(words) != 3 or not _METHOD.fullmatch(words[0]) or not words[1] or _BAD_TARGET.search(words[1]):
        raise HeaderError(400, "Bad request syntax")
    match = _VERSION.fullmatch(words[2])
    if match is None:
        raise HeaderError(400, "Bad request version")
    number = (int(match[1]), int(match[2]))
    if number >= (2, 0):
        raise HeaderError(505, "Invalid HTTP version")
    return words[0], words[1], words[2], number
