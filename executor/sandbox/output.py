"""A run's output: split into capped lines, kept as head + tail in memory, copied to a log file.

Everything here is bounded whatever the recipe prints: a line keeps at most
``max_line_chars`` characters, memory keeps ``head_lines`` + ``tail_lines`` lines, and the
per-task file keeps its first ``max_bytes`` and then the tail. Lines arrive masked: the
reader masks before calling ``append``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from loguru import logger

from executor.safe_names import is_safe_name

MAX_LINE_CHARS = 4096
"""DataHub caps a reported log line at 4 KiB."""
TAIL_LINES = 2000
"""DataHub reports at most the last 2,000 lines."""
TRUNCATED_LINE = " [...truncated]"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def truncation_marker(dropped: int) -> str:
    """The line standing where ``dropped`` lines were left out."""
    return f"[... {dropped} line(s) truncated ...]"


class LineSplitter:
    """Turns a byte stream into lines, holding at most ``keep_bytes`` of any one line.

    The caller gives ``keep_bytes`` a margin over the display cap so a secret that starts
    before the cap is still whole when it is masked.
    """

    def __init__(self, keep_bytes: int) -> None:
        self._keep = keep_bytes
        self._partial = bytearray()
        self._overflow = False

    def feed(self, chunk: bytes) -> Iterator[tuple[bytes, bool]]:
        """Complete lines in ``chunk`` as ``(kept bytes, was cut)``; the rest waits for more."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._take(chunk[start:])
                return
            self._take(chunk[start:end])
            yield bytes(self._partial), self._overflow
            self._partial.clear()
            self._overflow = False
            start = end + 1

    def finish(self) -> Iterator[tuple[bytes, bool]]:
        """The last line when the stream did not end with a newline."""
        if self._partial or self._overflow:
            yield bytes(self._partial), self._overflow
        self._partial.clear()
        self._overflow = False

    def _take(self, piece: bytes) -> None:
        room = self._keep - len(self._partial)
        if len(piece) > room:
            self._overflow = True
            piece = piece[: max(room, 0)]
        self._partial += piece


def cap_line(line: str, was_cut: bool, max_chars: int = MAX_LINE_CHARS) -> str:
    """``line`` cut to ``max_chars`` with a marker when anything was dropped."""
    if len(line) > max_chars:
        return line[:max_chars] + TRUNCATED_LINE
    return line + TRUNCATED_LINE if was_cut else line


class BoundedLog:
    """The first ``head_lines`` and the last ``tail_lines`` lines of a run; thread-safe."""

    def __init__(self, head_lines: int = 200, tail_lines: int = TAIL_LINES) -> None:
        self._head_max = head_lines
        self._head: list[str] = []
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total_lines(self) -> int:
        """Lines seen so far, kept or not."""
        with self._lock:
            return self._total

    def append(self, line: str) -> None:
        """Keep ``line`` in the head while it has room, else in the tail."""
        with self._lock:
            self._total += 1
            if len(self._head) < self._head_max:
                self._head.append(line)
            else:
                self._tail.append(line)

    def tail_lines(self, max_lines: int = TAIL_LINES) -> list[str]:
        """The last ``max_lines`` lines (from the tail, then the head if the tail is short)."""
        with self._lock:
            lines = [*self._head, *self._tail] if self._dropped() == 0 else list(self._tail)
        return lines[-max_lines:] if max_lines > 0 else []

    def tail(self, max_lines: int = TAIL_LINES) -> str:
        """The last ``max_lines`` lines as text, after a marker when earlier lines are left out."""
        lines = self.tail_lines(max_lines)
        with self._lock:
            left_out = self._total - len(lines)
        prefix = [truncation_marker(left_out)] if left_out > 0 else []
        return "\n".join([*prefix, *lines])

    def text(self) -> str:
        """Head, a marker when lines were dropped, and tail."""
        with self._lock:
            dropped = self._dropped()
            parts = [*self._head, *([truncation_marker(dropped)] if dropped else []), *self._tail]
        return "\n".join(parts)

    def _dropped(self) -> int:
        return self._total - len(self._head) - len(self._tail)


class TaskLogFile:
    """The full masked log of one task, capped at ``max_bytes`` (then the tail is appended at close)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = open_fresh_file(path)
        self.path = path
        self._file: TextIO = os.fdopen(fd, "w", encoding="utf-8", errors="replace", buffering=65536)
        self._max = max_bytes
        self._written = 0
        self._dropped = 0
        self._last_flush = time.monotonic()

    def write_line(self, line: str) -> None:
        """Append one line, or count it as dropped once the cap is reached."""
        size = len(line.encode("utf-8", "replace")) + 1
        if self._dropped or self._written + size > self._max:
            self._dropped += 1  # once full, every later line goes to the closing tail instead
            return
        self._file.write(line + "\n")
        self._written += size
        now = time.monotonic()
        if now - self._last_flush > 1.0:
            self._file.flush()
            self._last_flush = now

    def close(self, tail: Sequence[str]) -> None:
        """Finish the file: when lines were dropped, a marker and the last lines ``tail``."""
        try:
            if self._dropped:
                shown = list(tail)[-self._dropped:]
                skipped = self._dropped - len(shown)
                note = f"[... log file capped at {self._max} bytes; {skipped} line(s) left out ...]"
                self._file.write(note + "\n")
                for line in shown:
                    self._file.write(line + "\n")
        finally:
            self._file.close()


def open_fresh_file(path: Path, attempts: int = 3) -> int:
    """A new 0600 file at ``path``, opened for writing, never through a link.

    A recipe running as our user may have planted a symlink or a hard link under the name:
    whatever is there is unlinked first (the link, never its target), then the file is made
    with ``O_EXCL | O_NOFOLLOW`` relative to the directory, itself opened without following.
    """
    dir_fd = os.open(path.parent, _DIR_FLAGS)
    try:
        for _ in range(attempts):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.name, dir_fd=dir_fd)
            try:
                return os.open(path.name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue  # put back between the unlink and the open: once more
        raise FileExistsError(errno.EEXIST, "something keeps re-creating the file", path.name)
    finally:
        os.close(dir_fd)


def prune_task_logs(directory: Path, keep_files: int | None, keep_days: float | None,
                    suffix: str = ".log") -> int:
    """Delete per-task log files beyond the newest ``keep_files`` or older than ``keep_days``.

    Only our own files are touched: regular files (never a link) named ``<safe name><suffix>``
    directly in ``directory``, which must be a real directory (not a link to a foreign one).
    """
    try:
        dir_fd = os.open(directory, _DIR_FLAGS)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        logger.warning("not pruning task logs: {} is not a plain directory ({})", directory.name,
                       exc.strerror)
        return 0
    try:
        entries = sorted(_own_logs(dir_fd, suffix), reverse=True)
        cutoff = time.time() - keep_days * 86400 if keep_days is not None else None
        removed = 0
        for index, (mtime, name) in enumerate(entries):
            if (keep_files is not None and index >= keep_files) or (cutoff is not None and mtime < cutoff):
                try:
                    os.unlink(name, dir_fd=dir_fd)
                    removed += 1
                except OSError as exc:
                    logger.warning("cannot remove old task log {}: {}", name, exc.strerror)
        return removed
    finally:
        os.close(dir_fd)


def _own_logs(dir_fd: int, suffix: str) -> list[tuple[float, str]]:
    """``(mtime, name)`` of the regular files in the directory named like our task logs."""
    found = []
    with os.scandir(dir_fd) as listing:
        for entry in listing:
            name = entry.name
            if not name.endswith(suffix) or not is_safe_name(name[: -len(suffix)]):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((info.st_mtime, name))
    return found
