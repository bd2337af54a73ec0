"""One launch's dealings with its pool's warm spare (``executor.pool.warm``).

A ``SandboxLauncher`` (``pool.sandboxing``) holds one ``SpareUse``: in ``prestart`` it adopts the
spare when the run's spec is the spare's (``adopt``), or tells the holder that a run spawns
without it (``begins``: outside ``bwrap``, or with a venv build, every pool's spare is killed,
a recipe or pip beside it could tamper with it: ``pool.unconfined``); at the run's end it tells
the holder, once (``ends``: the last unconfined run's end may make a spare an offer kept asked
for); once the run has its input it asks for the next spare (``offer``). A spare whose adoption
fails in any way is discarded here (killed, cleaned up by its own thread), never left held with
nobody to give it input or stop it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from executor.pool.context import PoolContext
from executor.pool.run_specs import make_spare
from executor.pool.warm import ADOPTED, Spare, spare_key
from executor.sandbox import SandboxSpec
from executor.sandbox.identity import RunAs
from executor.sandbox.venvs import BUNDLED, NATIVE, VenvPolicy, VenvRequest


class SpareUse:
    """The pool's warm spare as one launch of ``task_id`` uses it; safe from any thread."""

    def __init__(self, pool: PoolContext, task_id: str) -> None:
        self.pool = pool
        self.task_id = task_id
        self._lock = threading.Lock()
        self._counted = False
        """This launch's run counts in the holder (``begins`` or adopted) until ``ends``."""
        self._build = False
        """It began as a launch that builds its venv (``begins(build=True)``)."""
        self.adopted_pid: int | None = None
        """The adopted spare's process, once ``adopt`` took one."""

    @property
    def alone(self) -> bool:
        """Whether this pool's runs are unconfined, no spare of any pool may live beside them: in
        every isolation but ``bwrap`` (own pid namespace and ``/proc``), where the recipe shares
        the spares' uid and view."""
        return self.pool.pool.isolation != "bwrap"

    def adopt(self, spec: SandboxSpec) -> Spare | None:
        """The pool's warm spare when ``spec`` is the one it was spawned with, adopted; None:
        spawn as usual (a spare of another run stays until ``begins``)."""
        if not self.pool.pool.warm_spare:
            return None
        spare = self.pool.warm.take(spare_key(spec), self.alone)
        if spare is None:
            return None
        reason = "its process died or was stopped before a task came"
        try:
            adopted = spare.run.adopt(spec)
        except Exception as exc:  # nobody else owns it: held without input, it would wait for ever
            logger.warning("{} could not adopt the warm spare: {}", self.task_id, exc)
            adopted, reason = False, "adoption failed"
        if not adopted:
            self.pool.warm.discard(spare, reason, self.alone)
            return None
        self.adopted_pid = spare.run.pid
        with self._lock:
            self._counted = True  # ``take`` counted it as a run in progress
        return spare

    def start_note(self) -> str:
        """What the Task's "starting" line adds when the run is an adopted spare (``<id> adopts
        the warm spare (pid N)``, which the bench counts): one INFO line a task, not two."""
        return "" if self.adopted_pid is None else f": {self.task_id} {ADOPTED} (pid {self.adopted_pid})"

    def discard(self, spare: Spare, reason: str) -> None:
        """An adopted spare the launch will not use after all (a stop came first)."""
        with self._lock:
            self._counted = False
        self.pool.warm.discard(spare, reason, self.alone)

    def begins(self, build: bool = False) -> None:
        """The launch spawns its own run (no spare adopted); ``build``: it builds its venv first
        (called before the build: no spare of any pool may live beside pip, in any isolation)."""
        if self.pool.pool.warm_spare:
            with self._lock:
                self._counted, self._build = True, build
            self.pool.warm.run_begins(self.alone, build)

    def ends(self) -> None:
        """The run begun or adopted has ended (its tree is gone); once, whoever calls it."""
        with self._lock:
            counted, self._counted = self._counted, False
        if counted:
            self.pool.warm.run_ended(build=self._build, alone=self.alone)

    def offer(self, venv_request: VenvRequest,
              where: Callable[[], tuple[tuple[RunAs | None, Path], VenvPolicy]]) -> None:
        """The run has its input: ask for a spare for the plain run of its venv, for the next
        task (with a spawn server and a venv that needs no build alone; ``run --once`` runs no
        next task). ``where``: the launch's identity and venv policy, asked for only then."""
        if self.pool.pool.warm_spare and self.pool.spawner is not None and not self.pool.once and \
                venv_request.version in (BUNDLED, NATIVE):
            identity, policy = where()
            make = functools.partial(make_spare, self.pool, identity, policy, venv_request)
            self.pool.warm.offer(venv_request, make)
