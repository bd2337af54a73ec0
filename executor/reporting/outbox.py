"""The outbox: terminal results written durably to disk before they are sent to GMS.

A result is first put here (temp file, fsync, atomic rename, fsync of the directory), then
sent; only once GMS has accepted it is it removed. A name only ever points at a record already
durable, so nothing can read (and send) a record that a crash could still undo.
So a crash, a kill -9 or a GMS outage never loses a finished task's result: on restart the
outbox is flushed first. A removal is not synced: if a power loss undoes it, the result is sent
once more after the restart, and GMS answers that the request is already terminal (delivery is
at least once, never lost). Files are 0600 in a 0700 directory (a result's report may hold
masked log lines). A file that cannot be read back is moved aside as ``*.corrupt`` and logged,
never allowed to block the rest; so is a record whose body is not as long as its header says
(a file damaged on disk), which is not mistaken for a forgery.
Safe to use from several threads and processes: each write is one atomic rename. A delivered
record's file is emptied and kept for the next write rather than removed (``spare_files``: on
some file systems making a file costs more than the rest of a write).

An instance remembers what it has read or written itself (by file name, with the file's inode,
size and mtime), so ``pending()`` re-reads only files that changed since: the Reporter flushes
right after every result and often besides, and a record may be megabytes of report.

Records are authenticated (``executor.reporting.outbox_auth``): each carries an HMAC bound to
the pool and the key it is stored under. A record whose MAC is missing or wrong, whose pool is
not this outbox's, whose key does not match its file name, or whose ``urn`` names another
request, is moved aside as ``*.quarantined``, logged, and never returned by ``pending`` or
``has``. The outbox of pool P lives at ``<state>/pools/P/outbox``, so the pool id defaults to
the name of the directory's parent, and the key is ``outbox.key`` in that parent.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from loguru import logger

from executor.errors import BadInputError
from executor.json_slices import ascii_slices, dump_pieces
from executor.reporting.outbox_auth import (
    KEY_FILE,
    derive_key,
    load_or_create_key,
    sign_chunks,
    verify,
    verify_bytes,
)
from executor.reporting.spare_files import SpareFiles
from executor.safe_names import safe_name

SUFFIX = ".json"
MAX_RECORD_BYTES = 64 * 1024 * 1024
STALE_TEMP_S = 60.0
WRITE_SLICE = 256 * 1024
MAX_STEM = 128
RECORD_FORMAT = 2
"""A record file: one line of JSON header (key, pool, stored_at_ns, MAC), then the record's JSON
bytes, which the MAC covers as they are; the header's ``size`` (not covered, absent in records of
earlier versions) is the body's length, so a body cut short is told from a forged one. Format 1
(earlier versions, still read): one JSON object holding the record, its MAC over a canonical
dump of the parsed record."""


class Outbox:
    """A directory of pending records, one file per key (a request id)."""

    def __init__(self, directory: str | os.PathLike[str], pool_id: str | None = None,
                 binding: str | None = None) -> None:
        """``binding``: a second secret the MAC key is derived with (the GMS token, see
        ``outbox_auth``); records written with another binding are quarantined."""
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self.pool_id = self.directory.parent.name if pool_id is None else pool_id
        self._secret = derive_key(load_or_create_key(self.directory.parent / KEY_FILE), binding)
        self._remove_stale_temps()
        self._loaded: dict[str, tuple[tuple[int, int, int], tuple[int, str, dict[str, Any]]]] = {}
        """File name -> ((inode, size, mtime_ns), what ``_load`` read from it). One outbox serves
        a pool's Tasks (put) and its Reporter (pending, remove): changed under ``_cache_lock``."""
        self._cache_lock = threading.Lock()
        self._spares = SpareFiles()

    def __len__(self) -> int:
        return len(self._record_names())

    def __repr__(self) -> str:
        return f"Outbox({str(self.directory)!r})"

    def has(self, key: str) -> bool:
        """True if an authentic record for ``key`` is waiting (a forged one is quarantined)."""
        return self._load_cached(self._path(key)) is not None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` under ``key`` durably, replacing any earlier one.

        The record is dumped once: the MAC covers exactly the bytes written, so neither a
        canonical re-dump nor a parse back is needed. The dump's pieces are never joined and
        are turned into bytes a slice at a time, for the MAC and then for the file: the one
        full copy of a report (megabytes) alive is its escaped piece."""
        stored_at = time.time_ns()
        try:
            pieces = dump_pieces(record)
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"outbox record for {key!r} is not JSON: {exc}") from None
        mac = sign_chunks(self._secret, self.pool_id, key, stored_at, ascii_slices(pieces, WRITE_SLICE))
        header = {"format": RECORD_FORMAT, "key": key, "pool": self.pool_id, "stored_at_ns": stored_at,
                  "mac": mac, "size": sum(len(piece) for piece in pieces)}
        target = self._path(key)
        info = self._write(target, json.dumps(header).encode() + b"\n", pieces)
        del pieces  # the megabytes go now, not after the directory's fsync
        self._sync_directory()
        self._remember_written(target, info, stored_at, key, record)

    def _write(self, target: Path, header: bytes, pieces: list[str]) -> os.stat_result:
        """Write a record file atomically and durably (temp file, fsync, rename); its ``fstat``
        (the renamed file's: the cache's key, with no ``stat`` of a name a delivery may remove).
        The temp file is one a delivery emptied when one is kept (``spare_files``)."""
        taken = self._spares.take()
        if taken is not None:
            fd, temp = taken
        else:
            temp = self.directory / f".{target.name}.{uuid.uuid4().hex}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(header)
                for chunk in ascii_slices(pieces, WRITE_SLICE):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
                info = os.fstat(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return info

    def _remember_written(self, target: Path, info: os.stat_result, stored_at: int, key: str,
                          record: dict[str, Any]) -> None:
        """Cache what was just written, so the next ``pending()`` (the Reporter flushes right
        after a put) does not read, parse and verify it back; a later change of the file (its
        inode, size or mtime) still makes it be read again. A copy of the record is kept (its
        strings, the report among them, are shared, not copied): what is delivered is what was
        signed, whatever the caller does with its own dict afterwards."""
        if not _urn_matches(key, record):
            return  # not cached: ``pending`` reads it and sets it aside as it would any such file
        entry = ((info.st_ino, info.st_size, info.st_mtime_ns), (stored_at, key, _json_copy(record)))
        with self._cache_lock:
            self._loaded[target.name] = entry

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        """Every waiting ``(key, record)``, oldest first; corrupt files are moved aside."""
        entries: list[tuple[int, str, str, dict[str, Any]]] = []
        present: set[str] = set()
        for name in self._record_names():
            path = self.directory / name
            present.add(name)
            loaded = self._load_cached(path)
            if loaded is not None:
                entries.append((loaded[0], path.name, loaded[1], loaded[2]))
        with self._cache_lock:
            for gone in set(self._loaded) - present:
                del self._loaded[gone]
        entries.sort(key=lambda e: (e[0], e[1]))
        return [(key, record) for _, _, key, record in entries]

    def _record_names(self) -> list[str]:
        """The names of the record files (``*.json``; temps and files set aside end otherwise),
        read in one ``scandir``: ``Path.glob`` costs several times that, and the Reporter
        looks after every result."""
        with os.scandir(self.directory) as entries:
            return [e.name for e in entries if e.name.endswith(SUFFIX)]

    def remove(self, key: str) -> None:
        """Forget ``key`` (GMS has its result); a missing key is fine."""
        path = self._path(key)
        with self._cache_lock:
            self._loaded.pop(path.name, None)
        if not self._spares.keep(path):  # emptied and kept for a next write, or removed
            path.unlink(missing_ok=True)  # no directory fsync: see the module doc

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
        with self._cache_lock:
            if loaded is None:
                self._loaded.pop(path.name, None)
            else:
                self._loaded[path.name] = (stamp, loaded)
        return loaded

    def _remove_stale_temps(self) -> None:
        """Drop temp files of writes that crashed before their rename, and emptied files kept
        for reuse (``spare_files``) by an instance that is gone.

        Only old ones: another thread or process may be writing right now (callers open an
        ``Outbox`` per use), and a write takes milliseconds, not a minute; an instance whose kept
        file was swept makes a new one.
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
            content, body = _read_record_file(path)
            stored_at, key = content["stored_at_ns"], content["key"]
            if not isinstance(stored_at, int) or not isinstance(key, str):
                raise ValueError("unexpected layout")
            authentic = self._authentic(content, body, key, stored_at)
            record = content["record"] if body is None else json.loads(body) if authentic else {}
            del body
            if not isinstance(record, dict):
                raise ValueError("unexpected layout")
        except FileNotFoundError:
            return None  # removed by another thread meanwhile
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._quarantine(path, ".corrupt", f"unreadable ({type(exc).__name__})")
            return None
        problem = self._forgery(path, content, key, record, authentic)
        if problem is not None:
            self._quarantine(path, ".quarantined", f"not authentic: {problem}; it will not be delivered")
            return None
        return stored_at, key, record

    def _authentic(self, content: dict[str, Any], body: bytes | None, key: str, stored_at: int) -> bool:
        """The MAC checks out: over the record's bytes as read (the current format), or over a
        canonical dump of the parsed record (the format of earlier versions, ``body`` None)."""
        mac = content.get("mac")
        if body is None:
            record = content.get("record")
            secret, pool = self._secret, self.pool_id
            return isinstance(record, dict) and verify(secret, pool, key, stored_at, record, mac)
        return verify_bytes(self._secret, self.pool_id, key, stored_at, body, mac)

    def _forgery(self, path: Path, content: dict[str, Any], key: str, record: dict[str, Any],
                 authentic: bool) -> str | None:
        """Why the record is not one this executor wrote for this pool and key; None if it is."""
        if not authentic:
            return "missing or wrong MAC"
        if content.get("pool") != self.pool_id:
            return "written for another pool"
        if not key or path.name != file_stem(key) + SUFFIX:
            return "its key does not match its file name"
        if not _urn_matches(key, record):
            return "its URN names another request"
        return None

    def _quarantine(self, path: Path, suffix: str, why: str) -> None:
        aside = path.with_name(path.name + suffix)
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
        logger.warning("outbox file {} is {}; moved aside to {}", path.name, why, aside.name)

    def _path(self, key: str) -> Path:
        return self.directory / (file_stem(key) + SUFFIX)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _json_copy(value: Any) -> Any:
    """A copy of a JSON value's containers (a tuple becomes the list it reads back as); its
    strings, numbers and the like are shared. ``copy.deepcopy`` does the same at several times
    the cost (its memo, its dispatch per object)."""
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(v) for v in value]
    return value


def _urn_matches(key: str, record: dict[str, Any]) -> bool:
    """A record's ``urn``, where it has one, names the request its key is."""
    urn = record.get("urn")
    return urn is None or (isinstance(urn, str) and urn.rsplit(":", 1)[-1] == key)


def _read_record_file(path: Path) -> tuple[dict[str, Any], bytes | None]:
    """A record file's header and its record's bytes; in the format of earlier versions (one
    JSON object holding the record) that object and None. Opened without following a link or
    blocking on a FIFO, and read in buffers of the file's size, never of the cap."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > MAX_RECORD_BYTES:
            raise ValueError("larger than an outbox record may be")
        first = handle.readline(MAX_RECORD_BYTES + 1)
        rest = handle.read(max(0, info.st_size - len(first)) + 1)
    if first.endswith(b"\n") and rest:
        header = json.loads(first)
        if isinstance(header, dict) and header.get("format") == RECORD_FORMAT:
            size = header.get("size")
            if isinstance(size, int) and len(rest) != size:
                raise ValueError("cut short" if len(rest) < size else "longer than its header says")
            return header, rest
    content = json.loads(first + rest if rest else first)
    if not isinstance(content, dict):
        raise ValueError("unexpected layout")
    if content.get("format") == RECORD_FORMAT:
        raise ValueError("cut short")  # a header whose body is missing
    return content, None


def file_stem(key: str) -> str:
    """A safe file name for ``key`` (``executor.safe_names``): the key itself if plain, else a
    cleaned prefix plus a hash, so no two keys share a file."""
    if not key:
        raise BadInputError("outbox key must not be empty")
    return safe_name(key, MAX_STEM)
