"""The outbox: terminal results written durably to disk before they are sent to GMS.

A result is first put here (temp file, fsync, atomic rename, fsync of the directory), then
sent; only once GMS has accepted it is it removed. So a crash, a kill -9 or a GMS outage
never loses a finished task's result: on restart the outbox is flushed first. Files are
0600 in a 0700 directory (a result's report may hold masked log lines). A file that cannot
be read back is moved aside as ``*.corrupt`` and logged, never allowed to block the rest.
Safe to use from several threads and processes: each write is one atomic rename.

An instance remembers what it has read (by file name, with the file's inode, size and mtime),
so ``pending()`` re-reads only files that changed since: the Reporter flushes often, and a
record may be megabytes of report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from loguru import logger

from executor.errors import BadInputError

SUFFIX = ".json"
STALE_TEMP_S = 60.0
_SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


class Outbox:
    """A directory of pending records, one file per key (a request id)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._remove_stale_temps()
        self._loaded: dict[str, tuple[tuple[int, int, int], tuple[int, str, dict[str, Any]]]] = {}
        """File name -> ((inode, size, mtime_ns), what ``_load`` read from it)."""

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*" + SUFFIX))

    def __repr__(self) -> str:
        return f"Outbox({str(self.directory)!r})"

    def has(self, key: str) -> bool:
        """True if a record for ``key`` is waiting."""
        return self._path(key).exists()

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` under ``key`` durably, replacing any earlier one."""
        try:
            data = json.dumps({"key": key, "stored_at_ns": time.time_ns(), "record": record})
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"outbox record for {key!r} is not JSON: {exc}") from None
        target = self._path(key)
        temp = self.directory / f".{target.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._sync_directory()

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        """Every waiting ``(key, record)``, oldest first; corrupt files are moved aside."""
        entries: list[tuple[int, str, str, dict[str, Any]]] = []
        present: set[str] = set()
        for path in self.directory.glob("*" + SUFFIX):
            present.add(path.name)
            loaded = self._load_cached(path)
            if loaded is not None:
                entries.append((loaded[0], path.name, loaded[1], loaded[2]))
        for gone in set(self._loaded) - present:
            del self._loaded[gone]
        entries.sort(key=lambda e: (e[0], e[1]))
        return [(key, record) for _, _, key, record in entries]

    def remove(self, key: str) -> None:
        """Forget ``key`` (GMS has its result); a missing key is fine."""
        path = self._path(key)
        self._loaded.pop(path.name, None)
        path.unlink(missing_ok=True)
        self._sync_directory()

    def _load_cached(self, path: Path) -> tuple[int, str, dict[str, Any]] | None:
        """``_load(path)``, or what it returned before if the file is unchanged since."""
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        cached = self._loaded.get(path.name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        loaded = self._load(path)
        if loaded is None:
            self._loaded.pop(path.name, None)
        else:
            self._loaded[path.name] = (stamp, loaded)
        return loaded

    def _remove_stale_temps(self) -> None:
        """Drop temp files of writes that crashed before their rename.

        Only old ones: another thread or process may be writing right now (callers open an
        ``Outbox`` per use), and a write takes milliseconds, not a minute.
        """
        cutoff = time.time() - STALE_TEMP_S
        for leftover in self.directory.glob(".*.tmp"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink(missing_ok=True)
            except FileNotFoundError:
                continue

    def _load(self, path: Path) -> tuple[int, str, dict[str, Any]] | None:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
            stored_at, key, record = content["stored_at_ns"], content["key"], content["record"]
            if not isinstance(stored_at, int) or not isinstance(key, str) or not isinstance(record, dict):
                raise ValueError("unexpected layout")
        except FileNotFoundError:
            return None  # removed by another thread meanwhile
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._quarantine(path, exc)
            return None
        return stored_at, key, record

    def _quarantine(self, path: Path, exc: Exception) -> None:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
        logger.warning("outbox file {} is unreadable ({}); moved aside to {}", path.name,
                       type(exc).__name__, aside.name)

    def _path(self, key: str) -> Path:
        return self.directory / (file_stem(key) + SUFFIX)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def file_stem(key: str) -> str:
    """A safe file name for ``key``: the key itself if plain, else a cleaned prefix plus a hash."""
    if not key:
        raise BadInputError("outbox key must not be empty")
    if _SAFE.match(key):
        return key
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", key)[:64]
    return f"{cleaned}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
