"""A run's output: cut into bounded lines, kept as head + tail in memory, copied to a log file.

The output reader hands over masked bytes a pipe's worth at a time; nothing here works line
by line on that path. ``LineCutter`` passes on only whole lines and cuts the rare line longer
than ``MAX_LINE_BYTES`` (found with a few ``rfind`` calls per chunk, not a split), so memory
holds at most that much of any one line. ``BoundedLog`` keeps the first ``head_lines`` lines
and, for the tail, the most recent chunks that hold the last ``tail_lines`` lines; only when
the tail is read are those chunks decoded, split and each line capped at ``MAX_LINE_CHARS``
characters.
"""

from __future__ import annotations

import threading
from collections import deque

from executor.sandbox.logfile import TaskLogFile, count_lines, open_fresh_file, prune_task_logs

__all__ = ["MAX_LINE_BYTES", "MAX_LINE_CHARS", "TAIL_LINES", "TRUNCATED_LINE", "BoundedLog", "LineCutter",
           "TaskLogFile", "cap_line", "count_lines", "decode_lines", "open_fresh_file", "prune_task_logs",
           "truncation_marker"]

MAX_LINE_CHARS = 4096
"""DataHub caps a reported log line at 4 KiB."""
MAX_LINE_BYTES = 4 * MAX_LINE_CHARS + 4
"""Bytes kept of one line: more than ``MAX_LINE_CHARS`` characters of any UTF-8, so a line cut
here is always shown with the truncation marker."""
TAIL_LINES = 2000
"""DataHub reports at most the last 2,000 lines."""
TRUNCATED_LINE = " [...truncated]"
_TRUNCATED = TRUNCATED_LINE.encode()


def truncation_marker(dropped: int) -> str:
    """The line standing where ``dropped`` lines were left out."""
    return f"[... {dropped} line(s) truncated ...]"


def cap_line(line: str, was_cut: bool, max_chars: int = MAX_LINE_CHARS) -> str:
    """``line`` cut to ``max_chars`` with a marker when anything was dropped."""
    if len(line) > max_chars:
        return line[:max_chars] + TRUNCATED_LINE
    return line + TRUNCATED_LINE if was_cut else line


def decode_lines(lines: list[bytes]) -> list[str]:
    """Raw lines as shown in a report: decoded, without a trailing CR, capped."""
    return [cap_line(line.decode("utf-8", "replace").removesuffix("\r"), False) for line in lines]


class LineCutter:
    """Turns a byte stream into whole lines, holding at most ``max_bytes`` of any one line.

    A longer line keeps its first ``max_bytes`` (never half a UTF-8 character) followed by
    `` [...truncated]``; the rest of it is dropped as it arrives.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._partial = bytearray()
        self._cut = False

    def feed(self, data: bytes) -> bytes:
        """The lines ``data`` completes, each ending with a newline; the rest waits for more."""
        last = data.rfind(b"\n")
        if last < 0:
            self._extend(data)
            return b""
        start = 0
        pieces = []
        if self._partial or self._cut:
            start = data.find(b"\n") + 1
            self._extend(data[: start - 1])
            pieces.append(self._take_line())
        body = data[start : last + 1] if start or last + 1 < len(data) else data
        pieces.append(_cut_long_lines(body, self._max) if _has_long_line(body, self._max) else body)
        self._extend(data[last + 1 :])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def finish(self) -> bytes:
        """The last line when the stream did not end with a newline (with one added)."""
        return self._take_line() if self._partial or self._cut else b""

    def _extend(self, piece: bytes) -> None:
        room = self._max - len(self._partial)
        if len(piece) > room:
            self._cut = True
            piece = piece[: max(room, 0)]
        self._partial += piece

    def _take_line(self) -> bytes:
        line = _cut_at(bytes(self._partial), self._max) if self._cut else bytes(self._partial) + b"\n"
        self._partial.clear()
        self._cut = False
        return line


def _has_long_line(body: bytes | bytearray, max_bytes: int, pos: int = 0, size: int | None = None) -> bool:
    """Whether a line of ``body[pos:size]`` (whole lines) is longer than ``max_bytes``, in about
    ``len(body) / max_bytes`` reverse searches: each window of ``max_bytes + 1`` bytes from a
    line start must hold a newline."""
    size = len(body) if size is None else size
    while size - pos > max_bytes + 1:
        found = body.rfind(b"\n", pos, pos + max_bytes + 1)
        if found < 0:
            return True
        pos = found + 1
    return False


def _cut_long_lines(body: bytes, max_bytes: int) -> bytes:
    """``body`` with each line longer than ``max_bytes`` cut (the rare path: few, long lines)."""
    lines = body.split(b"\n")[:-1]
    return b"".join(_cut_at(line, max_bytes) if len(line) > max_bytes else line + b"\n" for line in lines)


def _cut_at(line: bytes, max_bytes: int) -> bytes:
    """The first ``max_bytes`` of ``line`` without a split UTF-8 character, marker, newline."""
    end = min(max_bytes, len(line))
    for back in range(1, min(4, end) + 1):
        byte = line[end - back]
        if byte < 0x80:
            break
        if byte >= 0xC0:  # the last character's lead byte: does the whole character fit?
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < size:
                end -= back
            break
    return line[:end] + _TRUNCATED + b"\n"


def _start_of_last_lines(chunk: bytes, count: int) -> int:
    """Where the last ``count`` lines of ``chunk`` (whole lines) begin."""
    pos = len(chunk) - 1
    for _ in range(count):
        pos = chunk.rfind(b"\n", 0, pos)
    return pos + 1


def _decode_piece(chunk: bytes, start: int) -> str:
    """``chunk[start:]`` (whole lines) as text without its last newline, each line capped."""
    end = len(chunk) - 1
    with memoryview(chunk) as view, view[start:end] as body:
        text = str(body, "utf-8", "replace")
    if chunk.find(b"\r", start, end) < 0 and not _has_long_line(chunk, MAX_LINE_CHARS, start, end + 1):
        return text  # no line to cap: the text as decoded (no bytes line is longer in characters)
    return "\n".join(cap_line(line.removesuffix("\r"), False) for line in text.split("\n"))


def _decode_text(buffer: bytearray) -> str:
    """Whole lines (each ending with a newline) as text without the last newline, each line
    capped and without a trailing CR, as ``_decode_piece`` shows them."""
    end = len(buffer) - 1
    if end < 0:
        return ""
    with memoryview(buffer) as view, view[:end] as body:
        text = str(body, "utf-8", "replace")
    if buffer.find(b"\r") < 0 and not _has_long_line(buffer, MAX_LINE_CHARS):
        return text
    return "\n".join(cap_line(line.removesuffix("\r"), False) for line in text.split("\n"))


class BoundedLog:
    """The first ``head_lines`` and the last ``tail_lines`` lines of a run; thread-safe.

    ``add`` takes whole lines as bytes; the tail is kept as the chunks they came in, dropped
    from the front once the newer ones hold ``tail_lines`` lines.
    """

    def __init__(self, head_lines: int = 200, tail_lines: int = TAIL_LINES) -> None:
        self._head_max = head_lines
        self._tail_max = tail_lines
        self._head: list[bytes] = []
        self._tail: deque[tuple[bytes, int]] = deque()
        self._tail_count = 0
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total_lines(self) -> int:
        """Lines seen so far, kept or not."""
        with self._lock:
            return self._total

    def append(self, line: str) -> None:
        """One line of text (the sandbox's own notes)."""
        self.add(line.encode("utf-8", "replace") + b"\n")

    def add(self, lines: bytes, count: int | None = None) -> None:
        """Whole lines, each ending with a newline; ``count`` is how many when the caller has
        counted them already (``count_lines``)."""
        if not lines:
            return
        if count is None:
            count = count_lines(lines)
        with self._lock:
            self._total += count
            if len(self._head) < self._head_max:
                lines, count = self._fill_head(lines, count)
            if not count:
                return
            self._tail.append((lines, count))
            self._tail_count += count
            while len(self._tail) > 1 and self._tail_count - self._tail[0][1] >= self._tail_max:
                self._tail_count -= self._tail.popleft()[1]

    def tail_lines(self, max_lines: int = TAIL_LINES) -> list[str]:
        """The last ``max_lines`` lines (from the tail, then the head if the tail is short)."""
        with self._lock:
            pieces, _ = self._last_text(max_lines)
        return "\n".join(pieces).split("\n") if pieces else []

    def tail(self, max_lines: int = TAIL_LINES) -> str:
        """The last ``max_lines`` lines as text, after a marker when earlier lines are left out."""
        with self._lock:
            pieces, got = self._last_text(max_lines)
            left_out = self._total - got
        return "\n".join([*([truncation_marker(left_out)] if left_out > 0 else []), *pieces])

    def text(self) -> str:
        """Head, a marker when lines were dropped, and tail."""
        with self._lock:
            dropped = self._dropped()
            head, (tail, _) = decode_lines(self._head), self._tail_text(self._tail_max)
        return "\n".join([*head, *([truncation_marker(dropped)] if dropped else []), *tail])

    def take_text(self) -> str:
        """``text()``, taken out of the log (the run's output is over).

        ``text()`` holds the tail's chunks, their decoded pieces and the joined text at once
        (three copies of the tail, megabytes after a flood). Here the kept lines are copied
        into one buffer, each chunk let go once copied, and the buffer decoded: at most one
        buffer and the text on top of what the log held. The log is left empty, as if every
        line so far had been dropped; lines added later are kept as its tail.
        """
        with self._lock:
            dropped = self._dropped()
            marker = [truncation_marker(dropped).encode()] if dropped else []
            lines = [*self._head, *marker]
            starts = self._tail_starts()
            size = sum(len(line) + 1 for line in lines)
            size += sum(len(chunk) - start for (chunk, _), start in zip(self._tail, starts, strict=True))
            buffer = bytearray(size)
            with memoryview(buffer) as view:  # a bytearray's own slice assignment copies its source first
                pos = 0
                for line in lines:
                    view[pos : pos + len(line) + 1] = line + b"\n"
                    pos += len(line) + 1
                for start in starts:
                    chunk = self._tail.popleft()[0]
                    with memoryview(chunk) as source, source[start:] as kept:
                        view[pos : pos + len(kept)] = kept
                        pos += len(kept)
                    del chunk  # its last reference: freed before the next one is copied
            self._head, self._head_max, self._tail_count = [], 0, 0
        return _decode_text(buffer)

    def _tail_starts(self) -> list[int]:
        """Where the kept lines of each tail chunk begin, oldest first (as ``_tail_text`` cuts
        them; a chunk none of whose lines is kept starts at its end)."""
        starts: list[int] = []
        got = 0
        for chunk, count in reversed(self._tail):
            want = self._tail_max - got
            if want <= 0:
                starts.append(len(chunk))
            else:
                starts.append(_start_of_last_lines(chunk, want) if count > want else 0)
            got += min(count, max(want, 0))
        starts.reverse()
        return starts

    def _fill_head(self, lines: bytes, count: int) -> tuple[bytes, int]:
        """Move lines into the head while it has room; what is left and its line count."""
        pos = 0
        while count and len(self._head) < self._head_max:
            end = lines.index(b"\n", pos)
            self._head.append(lines[pos:end])
            pos, count = end + 1, count - 1
        return lines[pos:], count

    def _last_text(self, want: int) -> tuple[list[str], int]:
        """The last ``want`` lines as text pieces and how many lines they hold: from the tail,
        then from the head when the tail is short and no line between them was dropped (the
        lock is held)."""
        pieces, got = self._tail_text(want) if want > 0 else ([], 0)
        if got < want and self._dropped() == 0 and self._head:
            head = decode_lines(self._head)[-(want - got):]
            pieces, got = ["\n".join(head), *pieces], got + len(head)
        return pieces, got

    def _tail_text(self, want: int) -> tuple[list[str], int]:
        """The last ``want`` lines of the tail chunks as text pieces (lines joined by newlines,
        one piece per chunk, oldest first) and how many lines they hold (the lock is held).

        Only the chunks, and the part of the oldest of them, that hold those lines are decoded,
        each in one piece; a piece is split into lines only when one of them must be capped
        or loses a CR, so reading a tail of 2,000 long lines costs about the text it returns,
        not a string per line on top.
        """
        want = min(want, self._tail_max)
        pieces: list[str] = []
        got = 0
        for chunk, count in reversed(self._tail):
            if got >= want:
                break
            start = _start_of_last_lines(chunk, want - got) if count > want - got else 0
            pieces.append(_decode_piece(chunk, start))
            got += min(count, want - got)
        pieces.reverse()
        return pieces, got

    def _dropped(self) -> int:
        return self._total - len(self._head) - min(self._tail_count, self._tail_max)
