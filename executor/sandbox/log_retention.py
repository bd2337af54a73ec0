"""Task-log retention for every run without listing the log directory for every run.

Each run prunes the logs beside its own (``SandboxRun``: beyond ``log_keep_files`` or older
than ``log_keep_days``). Listing the directory and ``stat``-ing every log costs about 5 µs a
file: 2.4 ms of CPU per task at the default 500 files, more than any other step of a task's
set-up. So the first prune of a directory lists it (``logfile.scan_and_prune``) and keeps
what it found, name -> mtime; the runs after it add their own log (the newest) and remove the
oldest from that index, one ``unlink`` each, with no listing. The directory is listed again
``RESCAN_S`` after the last listing: a log put there by anyone else, or a log whose mtime
moved on (a run still writing it), is judged on its real mtime at the latest then.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from loguru import logger

from executor.sandbox.logfile import DIR_FLAGS, is_own_log, scan_and_prune, unlink_log
from executor.sandbox.spec import SandboxSpec

RESCAN_S = 60.0


class LogIndex:
    """The task logs of one directory as last listed, plus those added since; thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._logs: dict[str, float] | None = None
        self._listed_at = 0.0

    def prune(self, newest: str, keep_files: int | None, keep_days: float | None) -> int:
        """Retention after the log ``newest`` was made in the directory; how many logs went."""
        with self._lock:
            now = time.monotonic()
            if self._logs is None or now - self._listed_at > RESCAN_S:
                removed, found = scan_and_prune(self.directory, keep_files, keep_days)
                self._logs = None if found is None else dict(sorted(found.items(), key=lambda kv: kv[1]))
                self._listed_at = now
                return removed
            if is_own_log(newest):
                self._logs.pop(newest, None)
                self._logs[newest] = time.time()  # the newest goes last: the index is oldest first
            if not self._due(keep_files, keep_days):
                return 0
            try:
                dir_fd = os.open(self.directory, DIR_FLAGS)
            except OSError as exc:
                logger.debug("task logs of {} not pruned: {}", self.directory.name, exc.strerror)
                self._logs = None  # listed (and reported) afresh next time
                return 0
            try:
                return self._remove_oldest(dir_fd, keep_files, keep_days)
            finally:
                os.close(dir_fd)

    def forget(self, name: str) -> None:
        """A log removed by its own run (never given its input) no longer counts."""
        with self._lock:
            if self._logs is not None:
                self._logs.pop(name, None)

    def _due(self, keep_files: int | None, keep_days: float | None) -> bool:
        """Whether a log is past a limit (the lock is held): the oldest is first, no scan."""
        assert self._logs is not None
        if keep_files is not None and len(self._logs) > keep_files:
            return True
        oldest = next(iter(self._logs.values()), None)
        return keep_days is not None and oldest is not None and oldest < time.time() - keep_days * 86400

    def _remove_oldest(self, dir_fd: int, keep_files: int | None, keep_days: float | None) -> int:
        """Unlink from the front of the index while a limit is passed (the lock is held)."""
        assert self._logs is not None
        cutoff = time.time() - keep_days * 86400 if keep_days is not None else None
        removed = 0
        rechecked: set[str] = set()
        while self._logs:
            name, mtime = next(iter(self._logs.items()))
            over_count = keep_files is not None and len(self._logs) > keep_files
            if not (over_count or (cutoff is not None and mtime < cutoff)):
                break
            del self._logs[name]
            written = None if name in rechecked else _mtime(dir_fd, name)
            if written is not None and written > mtime:
                # Still being written (a long run's log): the index's order is when a log was
                # added, so judge it again by its real mtime, behind the ones added since.
                rechecked.add(name)
                self._logs[name] = written
                continue
            removed += unlink_log(dir_fd, name)
        return removed


def _mtime(dir_fd: int, name: str) -> float | None:
    """The log's mtime now (None when it is gone: nothing to keep)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mtime
    except OSError:
        return None


_indexes: dict[Path, LogIndex] = {}
_indexes_lock = threading.Lock()


def prune_beside(log_file: Path, keep_files: int | None, keep_days: float | None) -> int:
    """Retention in ``log_file``'s directory once ``log_file`` (the newest) was made."""
    with _indexes_lock:
        index = _indexes.get(log_file.parent)
        if index is None:
            index = _indexes[log_file.parent] = LogIndex(log_file.parent)
    return index.prune(log_file.name, keep_files, keep_days)


def forget_log(log_file: Path) -> None:
    """Take ``log_file`` out of its directory's index (its run removed it)."""
    with _indexes_lock:
        index = _indexes.get(log_file.parent)
    if index is not None:
        index.forget(log_file.name)


def prune_run_logs(spec: SandboxSpec) -> None:
    """Log retention beside a run's log, once the recipe is spawned or adopted (the directory is
    listed once a minute, not per run): that log, the newest, is kept beyond ``log_keep_files``
    as if retention had run before it was opened. Never raises: retention must never leave a
    recipe unwatched, nor a warm spare without an owner."""
    if spec.log_file is None:
        return
    try:
        keep = spec.log_keep_files + 1 if spec.log_keep_files is not None else None
        prune_beside(spec.log_file, keep, spec.log_keep_days)
    except Exception:
        logger.exception("task-log retention beside {} failed", spec.task_id)
