"""The outbox's record authentication: an HMAC-SHA256 key kept beside the records.

A recipe that can write into the outbox directory (same uid, no ``run_as``, no bwrap) could
otherwise forge a SUCCESS for any request, and the Reporter would deliver it with the
executor's token. Every record therefore carries ``HMAC(key, pool, key, stored_at, record
bytes)`` over the record's JSON bytes exactly as written (``sign_bytes``; records left by earlier
versions: over a canonical dump of the parsed record, ``sign``); the key is 32 random bytes in a
0600 file created on first use beside the outbox (``<state>/pools/<id>/outbox.key``), in the
0700 state dir that ``run_as`` and bwrap put out of a recipe's reach. The MAC binds the record to
the pool and the request key it claims, so a record copied to another name or pool fails too.

The key file alone does not stop a recipe that runs as the executor's own uid without bwrap:
it can read the file. So the Reporter derives the MAC key from the file's key *and* the GMS
token (``derive_key``), which such a recipe cannot read (the executor is not dumpable and the
token leaves its environment); a recipe that has the token could write to GMS directly anyway.
Rotating the token therefore quarantines records still pending: rotate after a clean stop.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loguru import logger

from executor.errors import ConfigError

KEY_FILE = "outbox.key"
KEY_BYTES = 32
_V2_PREFIX = b"remote-executor outbox record v2\0"


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``; created (0600, atomically) when there is none yet."""
    directory = path.parent
    key = _read_key(path)
    if key is not None:
        return key
    temp = directory / f".{KEY_FILE}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)  # never replaces a key another thread or process made first
    finally:
        temp.unlink(missing_ok=True)
    key = _read_key(path)
    if key is None:
        raise ConfigError(str(path), ["the outbox key vanished right after it was written"])
    return key


def _read_key(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot open the outbox key: {exc.strerror}"]) from None
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(str(path), ["the outbox key is not a regular file"])
        if info.st_uid != os.geteuid():  # e.g. the executor moved from uid 1000 to root
            logger.warning("outbox key {} belongs to uid {}, not to the executor", path.name, info.st_uid)
        if info.st_mode & 0o077:
            logger.warning("outbox key {} was readable by others; mode reset to 0600", path.name)
            os.fchmod(handle.fileno(), 0o600)
        text = handle.read(KEY_BYTES * 2 + 1).strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(str(path), ["the outbox key is damaged; remove it (pending records are then "
                                      "quarantined) or restore it"])
    return key


def derive_key(file_key: bytes, binding: str | None) -> bytes:
    """The MAC key: the file's key, bound to a second secret when one is given."""
    if not binding:
        return file_key
    return hmac.new(file_key, b"remote-executor outbox\0" + binding.encode(), hashlib.sha256).digest()


def sign_bytes(secret: bytes, pool: str, key: str, stored_at_ns: int, record_json: bytes) -> str:
    """The hex MAC of one record's exact JSON bytes as the pool ``pool`` stores it under ``key``
    (the current record format: the bytes written are the bytes signed, so nothing is re-encoded
    to sign or to check; a distinct prefix keeps it apart from the older form's message)."""
    return sign_chunks(secret, pool, key, stored_at_ns, (record_json,))


def sign_chunks(secret: bytes, pool: str, key: str, stored_at_ns: int, record_json: Iterable[bytes]) -> str:
    """``sign_bytes`` over the record's bytes given in pieces (the writer never joins them)."""
    header = json.dumps([pool, key, stored_at_ns], separators=(",", ":"), ensure_ascii=True).encode()
    mac = hmac.new(secret, _V2_PREFIX + header + b"\0", hashlib.sha256)
    for chunk in record_json:
        mac.update(chunk)
    return mac.hexdigest()


def verify_bytes(
    secret: bytes, pool: str, key: str, stored_at_ns: int, record_json: bytes, mac: object
) -> bool:
    """True if ``mac`` is the MAC of exactly these record bytes, pool and key."""
    if not isinstance(mac, str):
        return False
    return hmac.compare_digest(sign_bytes(secret, pool, key, stored_at_ns, record_json), mac)


def sign(secret: bytes, pool: str, key: str, stored_at_ns: int, record: dict[str, Any]) -> str:
    """The hex MAC of one record as the pool ``pool`` stores it under ``key``, in the older
    record format (a canonical dump of the parsed record); still checked so that records an
    earlier version left in the outbox are delivered after an upgrade."""
    return hmac.new(secret, _canonical(pool, key, stored_at_ns, record), hashlib.sha256).hexdigest()


def verify(
    secret: bytes, pool: str, key: str, stored_at_ns: int, record: dict[str, Any], mac: object
) -> bool:
    """True if ``mac`` is the MAC of exactly this record, pool and key."""
    if not isinstance(mac, str):
        return False
    return hmac.compare_digest(sign(secret, pool, key, stored_at_ns, record), mac)


def _canonical(pool: str, key: str, stored_at_ns: int, record: dict[str, Any]) -> bytes:
    body = {"pool": pool, "key": key, "stored_at_ns": stored_at_ns, "record": record}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
