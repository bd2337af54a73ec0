"""A run's private work dir: created 0700 under the pool's work root, measured, removed.

HOME and TMPDIR point into it, so whatever a recipe writes lands here, counts against the
optional disk limit, and is gone when the run ends.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
from pathlib import Path

from loguru import logger

from executor.safe_names import safe_name
from executor.sandbox.logfile import DIR_FLAGS

SHALLOW_MAX_ENTRIES = 32
"""The most entries the few-syscall removal before a result's hand-over takes on (a trivial
recipe leaves a handful); a wider work dir is removed after the hand-over."""
_NAME_TRIES = 100
"""Names tried before giving up (a clash of 32 random bits is already rare; a missing root costs one)."""


def create_work_dir(work_root: Path, task_id: str) -> Path:
    """A fresh ``work_root/<task>-XXXXXXXX`` with mode 0700 and a ``tmp`` inside.

    What ``tempfile.mkdtemp`` does (a new name, ``mkdir`` failing if it exists) in fewer steps:
    the root is made only when the first ``mkdir`` says it is missing.
    """
    prefix = os.path.join(work_root, safe_name(task_id, 48) + "-")
    for _ in range(_NAME_TRIES):
        path = prefix + os.urandom(4).hex()
        try:
            os.mkdir(path, 0o700)
            break
        except FileNotFoundError:
            work_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free work dir name under {work_root} after {_NAME_TRIES} tries")
    os.chmod(path, 0o700)  # exactly 0700, whatever the umask took away
    os.mkdir(os.path.join(path, "tmp"), 0o700)
    return Path(path)


def sweep_work_dirs(work_root: Path) -> int:
    """Remove the work dirs left under ``work_root`` by runs that are over (an executor killed
    during a run or its clean-up); how many. Only while none of the root's runs is live: the
    caller knows. Names starting with a dot are not work dirs (a venv cache) and stay."""
    try:
        leftovers = [p for p in work_root.iterdir() if not p.name.startswith(".") and p.is_dir()
                     and not p.is_symlink()]
    except OSError:
        return 0
    removed = sum(1 for path in leftovers if remove_work_dir(path))
    if removed:
        logger.info("removed {} work dir(s) left by earlier runs under {}", removed, work_root)
    return removed


def dir_usage(path: Path) -> int:
    """Bytes the tree under ``path`` occupies on disk (allocated blocks, symlinks not followed)."""
    total = 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


def remove_work_dir(path: Path, deep: bool = True) -> bool:
    """Delete the work dir even where the recipe removed write permission; False if some remains.
    Without ``deep`` only the few-syscall removal is tried (``_remove_shallow``): False at once
    when the work dir needs ``rmtree``'s walk, left for a later call."""
    if _remove_shallow(path):
        return True
    if not deep:
        return False

    def make_writable_and_retry(func: object, target: str, _exc: object) -> None:
        try:
            _make_private_dir(os.path.dirname(target))
            try:
                _make_private_dir(target)
            except NotADirectoryError:
                os.unlink(target)  # a file, or a link (O_NOFOLLOW: ELOOP is an OSError too)
                return
            shutil.rmtree(target, ignore_errors=True)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(target)

    shutil.rmtree(path, onerror=make_writable_and_retry)
    if path.exists():
        logger.warning("could not remove the work dir {} completely", path.name)
        return False
    return True


def _remove_shallow(path: Path) -> bool:
    """The common case in a few syscalls: files and empty directories (``tmp``) directly in the
    work dir, unlinked relative to its descriptor (never through a link). False, with whatever
    is left for ``shutil.rmtree``, at the first thing it is not (a full directory, a refusal),
    and at once, removing nothing, when it lists more than ``SHALLOW_MAX_ENTRIES``: its cost is
    then bounded, as the result's hand-over waits for it (``sandbox.run``); ``rmtree``'s walk
    costs several times as much for a work dir a trivial recipe leaves."""
    try:
        fd = os.open(path, DIR_FLAGS)
    except OSError:
        return False
    try:
        with os.scandir(fd) as listing:  # listed (up to the bound) before anything is removed
            entries = list(itertools.islice(listing, SHALLOW_MAX_ENTRIES + 1))
        if len(entries) > SHALLOW_MAX_ENTRIES:
            return False  # a wide dir (even of empty files, which dodge the disk limit): walked later
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                os.rmdir(entry.name, dir_fd=fd)
            else:
                os.unlink(entry.name, dir_fd=fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def _make_private_dir(path: str) -> None:
    """chmod 0700 a directory, never through a symlink (the recipe may have planted one)."""
    fd = os.open(path, DIR_FLAGS)
    try:
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
