"""The shared parents of task cgroups: which the executor makes itself, kept while it lives.

On v1 the task cgroups of a run go under ``<own cgroup>/remote-executor`` in each hierarchy,
made by the first run that needs it and kept while the executor lives, so a run pays its own
cgroup's mkdir and rmdir, not its parent's too; it is removed where empty at exit
(``release_parents``) and, after a crash, by the next start's sweep (``orphans``). On v2 the
parent is the delegated ``tasks`` subtree, never made or removed here (``made_here``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from pathlib import Path

PARENT_NAME = "remote-executor"

_kept_parents: set[Path] = set()
"""The ``made_here`` parents this process made task cgroups under (kept while it lives)."""
_kept_lock = threading.Lock()
_released_at_exit = False
"""``release_parents`` is registered to run at exit (once per process)."""


def made_here(parent: Path) -> bool:
    """True for a shared parent the executor makes and removes itself: v1's ``remote-executor``.
    v2's ``tasks`` is the delegated subtree, set up once with memory and pids enabled in its
    ``cgroup.subtree_control``: it is never removed, and never made again by a plain mkdir (it
    would have no controllers, so its task cgroups no ``memory.max``)."""
    return parent.name == PARENT_NAME


def release_parents() -> None:
    """Remove the shared parents this process used, where empty (another executor's runs may
    still be in one: it stays for them, and the last to leave removes it). Called at exit."""
    with _kept_lock:
        parents = list(_kept_parents)
        _kept_parents.clear()
    for parent in parents:  # only ``made_here`` ones are kept (``make_under``)
        with contextlib.suppress(OSError):
            os.rmdir(parent)


def _keep(parent: Path) -> None:
    global _released_at_exit
    with _kept_lock:
        if not _released_at_exit:
            atexit.register(release_parents)
            _released_at_exit = True
        _kept_parents.add(parent)


def make_under(parent: Path | None, leaf: str, made: list[Path]) -> Path | None:
    """The task cgroup ``leaf`` under ``parent``, and the parent first if it is not there and
    ``made_here`` (a missing v2 ``tasks`` raises: ``create`` then falls back to the monitor)."""
    if parent is None:
        return None
    directory = parent / leaf
    for _ in range(3):  # another executor may remove the shared parent between the two mkdirs
        try:
            os.mkdir(directory)
            break
        except FileNotFoundError:
            if not made_here(parent):
                raise
            parent.mkdir(exist_ok=True)
    else:
        os.mkdir(directory)
    if parent not in _kept_parents and made_here(parent):
        _keep(parent)
    made.append(directory)
    return directory
