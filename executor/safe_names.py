"""One way to turn an identifier from outside (URN, request id, pool id, plugin) into a file name.

Outside ids come from GMS, from a queue message or from a config file, so they may hold ``/``,
``..``, NUL, control characters or be very long. ``safe_name`` keeps an id that is already a
plain name (letters, digits, ``_``, ``-``, ``.``; not starting with ``.``; short enough) as it
is, so the usual UUID request ids name their files readably. Any other id becomes a cleaned,
shortened prefix plus ``~`` and a hash of the whole id. ``~`` never occurs in a kept name, so
a changed name can never equal a kept one, and two different changed ids differ in their hash:
two different ids never share a file name.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME_LENGTH = 96
"""Leaves room under the usual 255-byte file-name limit for suffixes such as ``.log`` or
``-XXXXXXXX`` (work dirs) and ``-p<pid>-<hex>`` (cgroups)."""
HASH_CHARS = 20
"""80 bits of SHA-256: no two ids of one host meet by chance."""
MARK = "~"

_KEPT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(identifier: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """A file name for ``identifier`` that cannot leave its directory or hit another id's name.

    The result has no ``/``, no NUL or control characters, does not start with ``.``, is
    never ``.`` or ``..``, and is at most ``max_length`` characters long.
    """
    if max_length < HASH_CHARS + 2:
        raise ValueError(f"max_length must be at least {HASH_CHARS + 2}")
    if len(identifier) <= max_length and _KEPT.fullmatch(identifier):
        return identifier
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    prefix = _UNSAFE.sub("_", identifier[: max_length - HASH_CHARS - 1])
    if prefix.startswith("."):
        prefix = "_" + prefix[1:]
    return f"{prefix or '_'}{MARK}{digest}"


def is_safe_name(name: str, max_length: int = MAX_NAME_LENGTH) -> bool:
    """True when ``name`` could have come from ``safe_name`` (kept or changed form)."""
    if not name or len(name) > max_length or name.startswith("."):
        return False
    kept, mark, digest = name.rpartition(MARK)
    if not mark:
        return bool(_KEPT.fullmatch(name))
    return (len(digest) == HASH_CHARS and all(c in "0123456789abcdef" for c in digest)
            and bool(re.fullmatch(r"[A-Za-z0-9_.-]+", kept)))
