"""Is the state directory usable by this process? A configuration question, answered up front.

The outbox, task logs, work dirs and venv cache live under ``state_dir``. A directory that
cannot be created or written is a mistake in the configuration or the installation, so
``check`` and ``run`` report it as one (which path, why, exit 2) before anything starts,
instead of a traceback or a supervisor crash loop. ``check`` only inspects (nothing is
created); ``run`` creates the directory and proves it writable by writing a probe file, which
is also the only test that holds for root (root passes permission bits, not a read-only
mount).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

FIELD = "state_dir"
DEPTH = 3
"""How deep ``state_dir`` must be the executor's own: ``pools/<id>/{logs,work,outbox,venvs}``.
Deeper entries (a task's work dir, a cached venv) may belong to the recipes' user."""


def inspect_state_dir(path: Path) -> str | None:
    """What is wrong with ``path`` for this user, without creating anything; None when usable."""
    try:
        if path.exists():
            if not path.is_dir():
                return f"{FIELD}: {path} exists but is not a directory"
            if not _writable(path):
                return f"{FIELD}: {path} is not writable by uid {os.geteuid()} ({_why(path)})"
            return _inside(path)
        parent = next((p for p in path.parents if p.exists()), Path("/"))
    except OSError as exc:
        return f"{FIELD}: {path} cannot be inspected ({exc.strerror})"
    if not parent.is_dir():
        return f"{FIELD}: {path} cannot be created: {parent} is not a directory"
    if not _writable(parent):
        who = f"uid {os.geteuid()}"
        return f"{FIELD}: {path} cannot be created: {parent} is not writable by {who} ({_why(parent)})"
    return None


def prepare_state_dir(path: Path) -> str | None:
    """Create ``path`` (0700) if needed and write a probe file in it; the problem, or None."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        return f"{FIELD}: {path} exists but is not a directory"
    except OSError as exc:
        return f"{FIELD}: {path} cannot be created by uid {os.geteuid()} ({_reason(exc)})"
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as exc:
        return f"{FIELD}: {path} is not writable by uid {os.geteuid()} ({_reason(exc)})"
    return _inside(path)


def _inside(path: Path) -> str | None:
    """A directory the executor writes into, under ``path``, that it cannot write."""
    found = _first_unwritable(path, DEPTH)
    if found is None:
        return None
    return f"{FIELD}: {found} (inside {path}) is not writable by uid {os.geteuid()} ({_why(found)})"


def _first_unwritable(path: Path, depth: int) -> Path | None:
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError:
        return path
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        child = Path(entry.path)
        if not _writable(child):
            return child
        found = _first_unwritable(child, depth - 1) if depth > 1 else None
        if found is not None:
            return found
    return None


def _writable(path: Path) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK | os.X_OK, effective_ids=effective)


def _why(path: Path) -> str:
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a directory"
    return (exc.strerror or type(exc).__name__).lower()
