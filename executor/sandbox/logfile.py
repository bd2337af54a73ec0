"""The per-task log file and its retention: bytes written in large writes, capped in size.

The file is made fresh (never through a planted link) and keeps the run's masked output up to
``max_bytes``; past that, whole lines are counted, and at close a marker and the run's last
lines are appended. Its writes are made on the caller's thread: in a run, the run log's
(``log_writer.OrderedHandOff``: a thread of its own). ``prune_task_logs`` removes old files
beside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from executor.safe_names import is_safe_name
from executor.sandbox.log_writer import write_all

_PROBE_BYTES = 16 << 10
_LONG_LINES_IN_PROBE = 32
"""At most this many newlines in the first ``_PROBE_BYTES`` (lines of 512 bytes and more):
``count_lines`` steps from newline to newline with ``find``."""
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class TaskLogFile:
    """The full masked log of one task, capped at ``max_bytes`` (then the tail is appended at close).

    ``write`` takes whole lines as bytes, as the output reader hands them over (up to a pipe's
    worth at a time), and passes them to the kernel in one write each: no per-line work.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd: int | None = open_fresh_file(path)
        self.path = path
        self._max = max_bytes
        self._written = 0
        self._dropped = 0
        self._full = False

    @property
    def lines_left_out(self) -> int:
        """Lines not written because the file was full (the closing tail shows the last ones)."""
        return self._dropped

    def write(self, lines: bytes, count: int | None = None) -> None:
        """Append whole lines (each ending with a newline), or count them once the cap is reached
        (``count``, when given, is how many they are: the run's log counts them once for its
        memory and this file)."""
        if self._full:
            self._dropped += count_lines(lines) if count is None else count
            return
        room = self._max - self._written
        if len(lines) > room:
            fits = lines.rfind(b"\n", 0, room) + 1
            self._dropped += count_lines(lines, fits)
            self._full = True  # once full, every later line goes to the closing tail instead
            lines = lines[:fits]
        self._write_all(lines)
        self._written += len(lines)

    def write_line(self, line: str) -> None:
        """Append one line of text."""
        self.write((line + "\n").encode("utf-8", "replace"))

    def close(self, tail: Sequence[str]) -> None:
        """Finish the file: when lines were dropped, a marker and the last lines ``tail``."""
        if self._fd is None:
            return
        try:
            if self._full:
                shown = list(tail)[-self._dropped:] if self._dropped else []
                skipped = self._dropped - len(shown)
                note = f"[... log file capped at {self._max} bytes; {skipped} line(s) left out ...]"
                write_all(self._fd, "\n".join([note, *shown, ""]).encode("utf-8", "replace"))
        finally:
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        """Close the file as it is (a write failed: nothing more is written to it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write_all(self, data: bytes) -> None:
        if self._fd is not None:
            write_all(self._fd, data)


def count_lines(data: bytes, start: int = 0) -> int:
    """The newlines in ``data[start:]``, counted the cheaper of two ways for its lines' length.

    ``bytes.count`` is a plain loop over every byte (about 0.6 ms per MiB); ``find`` is
    ``memchr`` (tens of GB/s) plus about 0.2 µs of Python per line found. Lines of 1 KiB cost
    a third as much stepping from newline to newline; short lines are counted. The first
    16 KiB decide, so a chunk of long lines then short ones costs at most a few times more.
    """
    probe_end = start + _PROBE_BYTES
    if len(data) <= probe_end or data.count(b"\n", start, probe_end) > _LONG_LINES_IN_PROBE:
        return data.count(b"\n", start)
    count, pos = 0, data.find(b"\n", start)
    while pos >= 0:
        count += 1
        pos = data.find(b"\n", pos + 1)
    return count


def open_fresh_file(path: Path, attempts: int = 3) -> int:
    """A new 0600 file at ``path``, opened for writing, never through a link.

    A recipe running as our user may have planted a symlink or a hard link under the name:
    whatever is there is unlinked first (the link, never its target), then the file is made
    with ``O_EXCL | O_NOFOLLOW`` relative to the directory, itself opened without following.
    """
    dir_fd = os.open(path.parent, DIR_FLAGS)
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
    return scan_and_prune(directory, keep_files, keep_days, suffix)[0]


def scan_and_prune(directory: Path, keep_files: int | None, keep_days: float | None,
                   suffix: str = ".log") -> tuple[int, dict[str, float] | None]:
    """``prune_task_logs``, and the logs left (name -> mtime; None when the directory cannot be
    read), for ``log_retention`` to go on from without listing the directory again."""
    try:
        dir_fd = os.open(directory, DIR_FLAGS)
    except FileNotFoundError:
        return 0, {}
    except OSError as exc:
        logger.warning("not pruning task logs: {} is not a plain directory ({})", directory.name,
                       exc.strerror)
        return 0, None
    try:
        found = {name: mtime for mtime, name in _own_logs(dir_fd, suffix)}
        return remove_beyond(dir_fd, found, keep_files, keep_days), found
    finally:
        os.close(dir_fd)


def remove_beyond(dir_fd: int, logs: dict[str, float], keep_files: int | None,
                  keep_days: float | None) -> int:
    """Unlink (in ``dir_fd``) the ``logs`` beyond the newest ``keep_files`` or older than
    ``keep_days``, taking them out of ``logs``; how many went."""
    cutoff = time.time() - keep_days * 86400 if keep_days is not None else None
    ordered = sorted(((mtime, name) for name, mtime in logs.items()), reverse=True)
    removed = 0
    for index, (mtime, name) in enumerate(ordered):
        if (keep_files is not None and index >= keep_files) or (cutoff is not None and mtime < cutoff):
            del logs[name]
            removed += unlink_log(dir_fd, name)
    return removed


def unlink_log(dir_fd: int, name: str) -> int:
    """Unlink one old log in ``dir_fd``; 1 if it went, 0 if it was gone or cannot go."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return 1
    except FileNotFoundError:
        return 0  # gone already (another executor's sweep, an operator)
    except OSError as exc:
        logger.warning("cannot remove old task log {}: {}", name, exc.strerror)
        return 0


def _own_logs(dir_fd: int, suffix: str) -> list[tuple[float, str]]:
    """``(mtime, name)`` of the regular files in the directory named like our task logs."""
    found = []
    with os.scandir(dir_fd) as listing:
        for entry in listing:
            name = entry.name
            if not is_own_log(name, suffix):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((info.st_mtime, name))
    return found


def is_own_log(name: str, suffix: str = ".log") -> bool:
    """Whether ``name`` is named like one of our task logs (retention touches no other file)."""
    return name.endswith(suffix) and is_safe_name(name[: -len(suffix)])
