"""The executor's runs outside ``bwrap`` and venv builds in progress, in all its pools together.

A pool's warm spare (``executor.pool.warm``) later gets a task's recipe and secrets on stdin.
Pools share the recipe uid (``REMOTE_EXECUTOR_RUN_AS`` applies to every pool, the shipped
defaults expect one ``run_as`` in each), so a recipe running outside ``bwrap`` (same uid, the
host's ``/proc``) or a venv build (pip runs a package's code unisolated, as the recipe's uid) in
*any* pool could open a spare's stdin, write into its work dir or ptrace it. So the rule is
service-wide: no spare of any pool is made while such a run or build is in progress anywhere,
and one beginning kills every pool's spare (one being made is killed once made).

Lock order: a holder may read ``busy`` under its own lock; ``Unconfined`` never calls a holder
while holding its own lock (it copies the holders, lets go, then calls them).
"""

from __future__ import annotations

import threading
import weakref
from typing import Protocol

from loguru import logger


class Neighbour(Protocol):
    """A spare's holder as the registry sees it."""

    def doom(self, reason: str) -> None:
        """Kill the spare now, one being made once made."""

    def retry(self) -> None:
        """Nothing holds a kept offer back any more: make it."""


class Unconfined:
    """The count of unconfined runs and builds in progress, and the holders they concern."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._holders: weakref.WeakSet[Neighbour] = weakref.WeakSet()

    @property
    def busy(self) -> bool:
        """Whether a run outside ``bwrap`` or a venv build is in progress in any pool."""
        with self._lock:
            return self._count > 0

    def join(self, holder: Neighbour) -> None:
        """``holder``'s spares obey the rule from now on (held weakly: a pool's end frees it)."""
        with self._lock:
            self._holders.add(holder)

    def begins(self, reason: str) -> None:
        """An unconfined run or a build begins: every pool's spare is killed, none made until
        its ``ends``."""
        with self._lock:
            self._count += 1
            holders = list(self._holders)
        for holder in holders:
            holder.doom(reason)

    def ends(self) -> None:
        """One begun has ended; the last one lets every pool make the offer it kept."""
        with self._lock:
            self._count = max(0, self._count - 1)
            holders = list(self._holders) if self._count == 0 else []
        for holder in holders:
            try:
                holder.retry()
            except Exception as exc:  # one pool's lost spare must not cost another pool's
                logger.warning("a kept warm spare offer was not made: {}", exc)


UNCONFINED = Unconfined()
"""The executor process's one registry: every pool's holder joins it by default."""
