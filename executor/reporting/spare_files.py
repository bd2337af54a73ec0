"""Emptied record files kept for the outbox's next writes: no inode made or freed per result.

Every result is written to a new file and removed once GMS has it. On ext4 without a journal
(the project's test machines, some cloud images) making a file walks past every inode of its
group freed in the last minute or more: with a file made and removed per task, each create
cost about 0.15 ms of CPU, the larger part of an outbox write. Databases recycle their log
files for the same reason. So a delivered record's file is renamed to a temp name and emptied
instead of unlinked (at most ``MAX_KEPT`` at once), and the next write goes into it, is synced
and renamed into place as a new file would be.

Only a file this instance emptied itself is written again: its device and inode are kept, and
the open that takes it checks them (no link followed, no FIFO waited on, a regular file with
one link, empty). A name swapped meanwhile (a recipe running as the executor's user can write
the state dir) is dropped and a new file made. The temp names (``.spare-*.tmp``) are those the
outbox sweeps at its start when they are a minute old, so a crash leaves nothing for long, and
nothing of a record stays in a kept file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import uuid
from pathlib import Path

MAX_KEPT = 8
"""Emptied files kept at once: enough for the results of a busy pool's tasks ending together."""
OPEN_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SpareFiles:
    """Emptied files, each kept beside the record it held (see the module doc). Thread-safe."""

    def __init__(self, max_kept: int = MAX_KEPT) -> None:
        self.max_kept = max_kept
        self._kept: list[tuple[Path, int, int]] = []
        """Kept files: their path, device and inode."""
        self._lock = threading.Lock()

    def keep(self, path: Path) -> bool:
        """Rename ``path`` to a temp name and empty it, to be written again; False when it was
        not kept (none is wanted, it is gone, or it is not a plain file of its own): the caller
        removes it as before."""
        with self._lock:
            if len(self._kept) >= self.max_kept:
                return False
        try:
            fd = os.open(path, OPEN_FLAGS)
        except OSError:
            return False
        spare = path.with_name(f".spare-{uuid.uuid4().hex}.tmp")
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                return False
            os.rename(path, spare)  # first: a name never points at an emptied record
            try:
                os.ftruncate(fd, 0)
            except OSError:
                spare.unlink(missing_ok=True)
                return True  # renamed away all the same: nothing left for the caller
        except OSError:
            return False
        finally:
            os.close(fd)
        with self._lock:
            self._kept.append((spare, info.st_dev, info.st_ino))
        return True

    def take(self) -> tuple[int, Path] | None:
        """A kept file opened for writing, and its temp name; None when none is kept (or the
        one kept is no longer the file this instance emptied: its name is then removed)."""
        with self._lock:
            if not self._kept:
                return None
            path, device, inode = self._kept.pop()
        try:
            fd = os.open(path, OPEN_FLAGS)
        except OSError:  # gone, or a symlink now (ELOOP)
            fd = -1
        if fd >= 0:
            info = os.fstat(fd)
            if ((info.st_dev, info.st_ino) == (device, inode) and stat.S_ISREG(info.st_mode)
                    and info.st_nlink == 1 and info.st_size == 0):
                return fd, path
            os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
