"""Reading a file back out of a work dir, which the recipe controls.

A recipe may replace a file the executor later reads (its ``--report-to`` file) with a
symlink to ``/proc/self/environ`` or a secrets file, a hard link to a foreign file, a FIFO
that blocks the reader, a directory or a device. ``read_back`` opens the name relative to a
descriptor of the work dir, never following a link at either level and never blocking
(``O_NOFOLLOW | O_NONBLOCK``), checks with ``lstat`` before and ``fstat`` after the open that
it is the same regular file with exactly one link, and reads at most ``max_bytes``. Anything
else raises ``RefusedFile`` with a sentence that says why; nothing of the target is read.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from executor.errors import BadInputError

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class RefusedFile(BadInputError):
    """A work-dir file that is not a plain private regular file of an acceptable size."""


def read_report(directory: Path, name: str, max_bytes: int, mask: Callable[[str], str],
                note: Callable[[str], None]) -> str | None:
    """The run's report file as masked text; None (and a ``note`` for the task's log saying
    why) when it is absent, refused or unreadable: a run's result never fails on its report."""
    try:
        data = read_back(directory, name, max_bytes)
    except RefusedFile as exc:
        note(f"report file refused and left out: {exc}")
        return None
    except OSError as exc:
        note(f"cannot read the report file: {exc.strerror}")
        return None
    return mask(data.decode("utf-8", errors="replace")) if data is not None else None


def read_back(directory: Path, name: str, max_bytes: int) -> bytes | None:
    """The content of ``directory/name``; None when there is no such file.

    Raises ``RefusedFile`` for a symlink (the file or the directory), a hard link, anything
    but a regular file, or a file larger than ``max_bytes``; ``OSError`` for other failures.
    """
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise RefusedFile(f"{name!r} is not a plain file name")
    try:
        dir_fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RefusedFile("the work dir was replaced by a symbolic link or a file") from None
        raise
    try:
        return _read_in(dir_fd, name, max_bytes)
    finally:
        os.close(dir_fd)


def _read_in(dir_fd: int, name: str, max_bytes: int) -> bytes | None:
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    _check(before, max_bytes)
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RefusedFile("it is a symbolic link") from None
        raise
    try:
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise RefusedFile("it was replaced while being opened")
        _check(after, max_bytes)
        return _read_capped(fd, max_bytes)
    finally:
        os.close(fd)


def _check(info: os.stat_result, max_bytes: int) -> None:
    kind = describe_kind(info.st_mode)
    if kind != "regular file":
        raise RefusedFile(f"it is a {kind}, not a regular file")
    if info.st_nlink != 1:
        raise RefusedFile(f"it has {info.st_nlink} hard links (a link to another file)")
    if info.st_size > max_bytes:
        raise RefusedFile(f"it is larger than {max_bytes} bytes")


def _read_capped(fd: int, max_bytes: int) -> bytes:
    """At most ``max_bytes``; a file that grew past the cap meanwhile is refused."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise RefusedFile(f"it grew past {max_bytes} bytes while being read")


def describe_kind(mode: int) -> str:
    """``regular file``, ``symbolic link``, ``FIFO``, ``directory``, ``socket`` or ``device``."""
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"
