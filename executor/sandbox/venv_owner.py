"""Who owns a dynamic venv while it is built and after: the recipe user, then the executor.

A ``run_as`` pool's venv builds run as its recipe user (``venv_build.PipVenvBuilder``): the
executor makes the venv dir and hands it over empty (``hand_over``), every step runs through
the exec wrapper as that user (``as_user_prefix``), and afterwards the executor takes the tree
back (``take_back``): owned by it, writable by nobody else, readable by all, so no later recipe
of the pool can plant code in a venv that other runs use. While the recipe user owns the tree,
the executor writes into it only new files that nothing planted can redirect (``write_new_file``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from executor.sandbox.identity import RunAs

LAUNCHER = Path(__file__).with_name("launch.py")


def as_user_prefix(run_as: RunAs) -> list[str]:
    """The exec wrapper's command line that runs the rest as ``run_as`` (no capabilities, no_new_privs)."""
    return [sys.executable, "-I", "-S", str(LAUNCHER), *run_as.launcher_options(), "--"]


def hand_over(target: Path, run_as: RunAs) -> None:
    """An empty venv dir, 0700 and the recipe user's, for a build that runs as that user."""
    target.mkdir(mode=0o700)
    os.chown(target, run_as.uid, run_as.gid, follow_symlinks=False)


def take_back(target: Path) -> None:
    """Make a venv built as a recipe user the executor's: owned by it, writable only by it, readable
    (and where it was executable, executable) by all.

    Walks with directory descriptors (``os.fwalk``) and changes each entry relative to its
    directory's descriptor, never following a link: a process of the build that is still
    running cannot redirect the walk by swapping a directory for a link meanwhile.
    """
    uid, gid = os.geteuid(), os.getegid()
    for _top, dirs, files, dir_fd in os.fwalk(target, follow_symlinks=False):
        for name in [*dirs, *files]:
            _own(name, dir_fd, uid, gid)
    _own(str(target), None, uid, gid)


def _own(name: str, dir_fd: int | None, uid: int, gid: int) -> None:
    info = os.lstat(name, dir_fd=dir_fd)
    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        return
    executable = stat.S_ISDIR(info.st_mode) or info.st_mode & 0o111
    os.chmod(name, 0o755 if executable else 0o644, dir_fd=dir_fd, follow_symlinks=False)


def write_new_file(path: Path, text: str) -> None:
    """Replace ``path`` with a new 0644 file, never writing through whatever was planted there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(text)
