"""A JSON dump turned into bytes a slice at a time: the outbox's record file and its MAC, and
the body of an ``ingestProposal`` call (``datahub.proposal``).

A result may hold megabytes of report. Its dump is kept as the encoder's pieces, never joined
into one string (the one full copy alive is the report's escaped piece), and turned into bytes
as it is written or sent. The encoder yields a piece per token (a key, a comma, a number), so
the small pieces are gathered into one slice: a trivial result is one write and one ``send``,
not one per token (each a system call, and on a socket a segment of its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

ENCODER = json.JSONEncoder()
"""``ensure_ascii``: every piece is ASCII without control characters."""
ONE_PIECE_CHARS = 256 * 1024
"""A value whose dump can be no longer than this is dumped in one piece by the C encoder."""
_MOST_CHARS_PER_CHAR = 12
"""The longest escape of one character under ``ensure_ascii``: a surrogate pair's two ``\\uXXXX``."""
_SCALAR_CHARS = 32
"""A bound on a number's, a boolean's or null's text, and on a separator's or a bracket's."""


def dump_pieces(value: Any) -> list[str]:
    """The encoder's pieces of ``value``'s JSON (raises ``TypeError``/``ValueError`` as it does).

    A small value (most results and proposals: a report of a few KiB) is dumped whole by the C
    encoder, one piece; ``iterencode`` runs the pure-Python encoder, a call per token, which
    cost a trivial task's result and its two proposals about 0.1 ms. Only a value that may be
    large keeps the pieces (the C encoder would hold its output twice while joining it)."""
    if _dump_fits(value, ONE_PIECE_CHARS):
        return [ENCODER.encode(value)]
    return list(ENCODER.iterencode(value))


def _dump_fits(value: Any, budget: int) -> bool:
    """True when ``value``'s dump surely takes at most ``budget`` characters (a bound, walked
    with an early stop: a value holding a long string is told in a few steps)."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            budget -= _SCALAR_CHARS + len(item) * _MOST_CHARS_PER_CHAR
        elif isinstance(item, dict):
            budget -= _SCALAR_CHARS * (len(item) + 1)
            todo += item.keys()
            todo += item.values()
        elif isinstance(item, list | tuple):
            budget -= _SCALAR_CHARS * (len(item) + 1)
            todo += item
        else:
            budget -= _SCALAR_CHARS
        if budget < 0:
            return False
    return True


def escaped_length(pieces: Iterable[str]) -> int:
    """The length of the pieces escaped as the inside of a JSON string: escaping an ASCII dump
    only adds a backslash before each ``"`` and ``\\``."""
    return sum(len(p) + p.count("\\") + p.count('"') for p in pieces)


def ascii_slices(pieces: Iterable[str], size: int, *, escaped: bool = False) -> Iterator[bytes]:
    """``pieces`` as bytes, in slices of about ``size`` at most: consecutive small pieces joined,
    a piece longer than ``size`` cut. ``escaped``: as the inside of a JSON string (a JSON text
    carried as a string value), which escaping slice by slice gives exactly as escaping it whole."""
    batch: list[str] = []
    gathered = 0
    for piece in pieces:
        if gathered + len(piece) > size and batch:
            yield _bytes("".join(batch), escaped)
            batch, gathered = [], 0
        if len(piece) > size:
            for start in range(0, len(piece), size):
                yield _bytes(piece[start : start + size], escaped)
            continue
        batch.append(piece)
        gathered += len(piece)
    if batch:
        yield _bytes("".join(batch), escaped)


def _bytes(text: str, escaped: bool) -> bytes:
    return (encode_basestring_ascii(text)[1:-1] if escaped else text).encode("ascii")
