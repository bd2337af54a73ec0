"""The lines of a report as ``str.splitlines`` counts them, found without splitting the text.

A result's report is its log's last 2,000 lines (each capped at 4 KiB): up to 8 MB of text,
about 2 MB for a run that printed 1 KiB lines. Splitting that into a list of lines and joining
it again, once to put the summary first and once for DataHub's caps, made four copies of it
and cost about 6 ms per split. When the only line break in the text is ``\\n`` (no CR, form
feed or Unicode separator, which ``splitlines`` would also break at), the same cuts are found
with a few thousand ``find`` calls and the text is copied at most once.
"""

from __future__ import annotations

OTHER_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Where ``str.splitlines`` breaks besides ``\\n``."""


def plain_lines(text: str) -> bool:
    """True when ``\\n`` is the only line break ``splitlines`` would find in ``text``."""
    return not any(brk in text for brk in OTHER_BREAKS)


def body_end(text: str) -> int:
    """Where ``text``'s lines end: before the final newline that ``splitlines`` does not count
    as a line. An index, not a slice: the caller copies the text at most once, in its cut."""
    return len(text) - 1 if text.endswith("\n") else len(text)


def start_of_last(text: str, count: int, end: int | None = None) -> int:
    """Where the last ``count`` (at least 1) lines of a plain ``text[:end]`` (``end`` from
    ``body_end``) begin; 0 when it has no more than that."""
    pos = len(text) if end is None else end
    for _ in range(count):
        pos = text.rfind("\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


def has_longer_line(text: str, max_chars: int) -> bool:
    """Whether a line of a plain ``text`` is longer than ``max_chars``, in about
    ``len(text) / max_chars`` reverse searches: each window of ``max_chars + 1`` characters
    from a line start must hold a newline, unless the text ends within it."""
    pos, size = 0, len(text)
    while size - pos > max_chars:
        found = text.rfind("\n", pos, pos + max_chars + 1)
        if found < 0:
            return True
        pos = found + 1
    return False
