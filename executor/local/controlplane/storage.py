"""SQLite state of the control plane: aspects with their history, secrets, and a few settings.

Every aspect write is a new row, so the latest value and the full history of an aspect are
both one query away (GMS's ``version=0`` is the latest, ``1`` the oldest). Secret values are
kept in their own table, as opaque blobs sealed by ``crypto``; this module never sees a
plaintext secret. One connection serves all threads behind one lock: the control plane's
traffic is small, and a single writer keeps check-then-write rules (terminal results) atomic.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aspects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    urn TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    aspect TEXT NOT NULL,
    value TEXT NOT NULL,
    system_metadata TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS aspects_by_urn ON aspects (urn, aspect, id);
CREATE INDEX IF NOT EXISTS aspects_by_type ON aspects (entity_type, aspect);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    description TEXT,
    scheme TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
"""

Precondition = Callable[[dict[str, Any] | None], None]
"""Called with the current latest value (or None) inside the write transaction; raises to refuse."""


@dataclass(frozen=True)
class AspectWrite:
    """One aspect to store, with an optional rule checked atomically against the current value."""

    urn: str
    entity_type: str
    aspect: str
    value: dict[str, Any]
    system_metadata: dict[str, Any] | None = None
    precondition: Precondition | None = None


@dataclass(frozen=True)
class StoredAspect:
    """One version of an aspect as stored."""

    urn: str
    aspect: str
    value: dict[str, Any]
    system_metadata: dict[str, Any] | None
    created_ms: int


@dataclass(frozen=True)
class SealedSecret:
    """A secret row: the value stays sealed (see ``crypto``)."""

    name: str
    description: str | None
    scheme: str
    sealed: bytes


def now_ms() -> int:
    """Wall-clock milliseconds, the unit DataHub uses for timestamps."""
    return int(time.time() * 1000)


class Storage:
    """The control plane's SQLite database under ``state_dir`` (file ``controlplane.db``)."""

    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(state_dir, "controlplane.db")
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        os.chmod(self.path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA secure_delete=ON")  # replaced secret blobs leave no old bytes behind
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the connection; later calls fail."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- settings ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A stored setting, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- aspects ----------------------------------------------------------------------------

    def put_aspects(self, writes: Sequence[AspectWrite]) -> None:
        """Store all writes in one transaction; if any precondition raises, none is stored."""
        created = now_ms()
        with self._transaction() as db:
            for w in writes:
                if w.precondition is not None:
                    w.precondition(self._latest(db, w.urn, w.aspect))
                db.execute(
                    "INSERT INTO aspects (urn, entity_type, aspect, value, system_metadata, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        w.urn,
                        w.entity_type,
                        w.aspect,
                        json.dumps(w.value),
                        None if w.system_metadata is None else json.dumps(w.system_metadata),
                        created,
                    ),
                )

    @staticmethod
    def _latest(db: sqlite3.Connection, urn: str, aspect: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT value FROM aspects WHERE urn = ? AND aspect = ? ORDER BY id DESC LIMIT 1",
            (urn, aspect),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def get_aspect(self, urn: str, aspect: str, version: int = 0) -> StoredAspect | None:
        """Version 0 is the latest; 1 the oldest, 2 the next, ... (GMS's numbering)."""
        if version < 0:
            return None
        if version == 0:
            sql = "ORDER BY id DESC LIMIT 1"
            args: tuple[Any, ...] = (urn, aspect)
        else:
            sql = "ORDER BY id ASC LIMIT 1 OFFSET ?"
            args = (urn, aspect, version - 1)
        with self._lock:
            row = self._db.execute(
                "SELECT urn, aspect, value, system_metadata, created_ms FROM aspects"  # noqa: S608
                " WHERE urn = ? AND aspect = ? " + sql,  # constant fragments; values are bound
                args,
            ).fetchone()
        return None if row is None else _stored(row)

    def aspect_history(self, urn: str, aspect: str) -> list[StoredAspect]:
        """Every stored version, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT urn, aspect, value, system_metadata, created_ms FROM aspects"
                " WHERE urn = ? AND aspect = ? ORDER BY id ASC",
                (urn, aspect),
            ).fetchall()
        return [_stored(r) for r in rows]

    def latest_aspects(
        self, entity_type: str | None = None, aspect: str | None = None, urn: str | None = None
    ) -> list[StoredAspect]:
        """The latest version of each (urn, aspect), filtered; ordered by first write."""
        where, args = [], []
        for column, value in (("entity_type", entity_type), ("aspect", aspect), ("urn", urn)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.urn, a.aspect, a.value, a.system_metadata, a.created_ms FROM aspects a"  # noqa: S608
                " JOIN (SELECT MAX(id) AS last, MIN(id) AS first FROM aspects "
                + clause
                + " GROUP BY urn, aspect) g ON a.id = g.last ORDER BY g.first ASC",  # values are bound
                args,
            ).fetchall()
        return [_stored(r) for r in rows]

    def delete_entity(self, urn: str) -> int:
        """Remove every aspect of ``urn``; returns how many rows went."""
        with self._transaction() as db:
            return int(db.execute("DELETE FROM aspects WHERE urn = ?", (urn,)).rowcount)

    # -- secrets ----------------------------------------------------------------------------

    def put_secret(self, secret: SealedSecret, *, create: bool) -> None:
        """Insert (``create``) or replace a secret; raises KeyError / ValueError on a clash."""
        stamp = now_ms()
        with self._transaction() as db:
            exists = db.execute("SELECT 1 FROM secrets WHERE name = ?", (secret.name,)).fetchone()
            if create and exists:
                raise ValueError(f"secret {secret.name!r} already exists")
            if not create and not exists:
                raise KeyError(secret.name)
            db.execute(
                "INSERT INTO secrets (name, description, scheme, sealed, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
                " description = excluded.description, scheme = excluded.scheme,"
                " sealed = excluded.sealed, updated_ms = excluded.updated_ms",
                (secret.name, secret.description, secret.scheme, secret.sealed, stamp, stamp),
            )

    def get_secrets(self, names: Sequence[str] | None = None) -> list[SealedSecret]:
        """The named secrets that exist (all when ``names`` is None), sorted by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, description, scheme, sealed FROM secrets ORDER BY name"
            ).fetchall()
        wanted = None if names is None else set(names)
        return [
            SealedSecret(name=r[0], description=r[1], scheme=r[2], sealed=bytes(r[3]))
            for r in rows
            if wanted is None or r[0] in wanted
        ]

    def delete_secret(self, name: str) -> bool:
        """Remove a secret; False if there was none."""
        with self._transaction() as db:
            return bool(db.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount)


def _stored(row: tuple[Any, ...]) -> StoredAspect:
    return StoredAspect(
        urn=row[0],
        aspect=row[1],
        value=json.loads(row[2]),
        system_metadata=None if row[3] is None else json.loads(row[3]),
        created_ms=int(row[4]),
    )
