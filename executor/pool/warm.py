"""A pool's warm spare: one recipe process spawned ahead of the next task, held without input.

With ``pools[*].warm_spare``, once a task of the pool has started its run, the pool keeps one
recipe process ready: spawned through the same path as a task's held run (spawn server, its own
cgroup, scrubbed environment, private work dir, rlimits, ``run_as``, isolation), for the plain
run of that task's venv (no ``--debug``, not a test connection, no task env or limit overrides),
its interpreter and CLI started and blocked reading stdin. The next task whose spec equals the
spare's (``spare_key``: everything but the task's id, log file and the pool credentials of the
moment, which the adopter adds to the masker) adopts it instead of spawning
(``SandboxRun.adopt``); any other task spawns as before and the spare stays, unless the task's
venv differs: its ``offer`` then replaces the spare with one of its own venv.

The spare is never a task: it has no input, so nothing secret (the recipe and its secrets come
on stdin only once adopted, as for any held run), is adopted at most once, belongs to one pool,
and is killed and cleaned up (tree, work dir, cgroup) after ``idle_s`` without a task of the
pool, at the executor's drain (``close``) and at the pool's stop or restart (``clear``). A spare
whose process died is never adopted. Left by a killed executor, it is what a killed task's run
is: its marker and cgroup name make the start-up sweeps remove it (``sandbox.orphans``,
``workdir.sweep_work_dirs``). Cost: one idle process per pool holding its start-up memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace

from loguru import logger

from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox.spawner import IDLE_S
from executor.sandbox.venvs import ResolvedVenv
from executor.supervision.spare_threads import SPARES

KILL_WAIT_S = 5.0
"""How long ``clear`` waits for a killed spare to be reaped and cleaned up."""
SPARE_ID = "warm-spare"
"""The spare's run id: its work dir, cgroup and threads carry it (the task's log names it)."""


def spare_key(spec: SandboxSpec) -> SandboxSpec:
    """What must be equal for a task to adopt a spare: the spec without what names the task (its
    id, its log file) and without the credentials of the moment (the adopter masks its own)."""
    return replace(spec, task_id="", log_file=None, secrets=())


@dataclass(frozen=True)
class Spare:
    """One spare's run (started, held), its venv and its key."""

    run: SandboxRun
    venv: ResolvedVenv
    key: SandboxSpec
    kind: Hashable = None
    """What it was made for (the venv asked for): a task of another kind replaces it."""
    born: float = field(default_factory=time.monotonic)
    """When it was spawned (``time.monotonic``)."""


@dataclass
class SpareCounts:
    """What became of the pool's spares (for tests and the bench's waste figure)."""

    made: int = 0
    adopted: int = 0
    discarded: int = 0


class WarmSpare:
    """The pool's one spare at most; every method is safe from any thread and never blocks on a
    spawn (``offer`` makes the spare on a spare thread)."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self.counts = SpareCounts()
        self._lock = threading.Lock()
        self._spare: Spare | None = None
        self._making = False
        self._closed = False
        self._generation = 0
        """Bumped by ``clear``: a spare made across it is killed, not kept."""
        self._last_used = time.monotonic()
        self._timer: threading.Timer | None = None

    def offer(self, kind: Hashable, make: Callable[[], Spare | None]) -> None:
        """A task of the pool started its run: make a spare with ``make`` (on a spare thread)
        unless one of the same ``kind`` exists or one is being made, or the executor drains. A
        spare of another kind is killed: the spare follows the pool's latest venv, and one no
        task can adopt is never kept alive by tasks that cannot use it."""
        stale = None
        with self._lock:
            self._last_used = time.monotonic()
            if self._spare is not None and self._spare.kind != kind:
                stale, self._spare = self._spare, None
            busy = self._closed or self._making or self._spare is not None
            if not busy:
                self._making, generation = True, self._generation
        if stale is not None:
            self._kill(stale, "a task of another venv came")
        if busy:
            return
        try:
            SPARES.start(lambda: self._make(make, generation), "warm-spare", "warm-spare")
        except BaseException:
            with self._lock:
                self._making = False
            raise

    def take(self, key: SandboxSpec) -> Spare | None:
        """The spare, for a task whose spec has ``key`` (``spare_key``); None when there is none
        or it was made for another run (it stays). The caller adopts it or ``discard``s it."""
        with self._lock:
            self._last_used = time.monotonic()
            spare = self._spare
            if spare is None or spare.key != key:
                return None
            self._spare = None
            self.counts.adopted += 1
        return spare

    def discard(self, spare: Spare, reason: str) -> None:
        """Kill ``spare`` (taken, then not adoptable) now; its run cleans up on its own thread."""
        with self._lock:
            self.counts.adopted -= 1
        self._kill(spare, reason)

    def clear(self, wait_s: float = KILL_WAIT_S) -> None:
        """The pool stops or restarts: kill the spare (one being made is killed once made) and
        wait, bounded, until it is reaped and cleaned up. Later tasks may make a new one."""
        with self._lock:
            self._generation += 1
            spare, self._spare = self._spare, None
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if spare is not None:
            self._kill(spare, "the pool stops")
            spare.run.wait(wait_s)

    def close(self, wait_s: float = KILL_WAIT_S) -> None:
        """The executor drains: kill the spare and make none any more."""
        with self._lock:
            self._closed = True
        self.clear(wait_s)

    @property
    def ready(self) -> Spare | None:
        """The spare held now, if any (for tests)."""
        return self._spare

    def _make(self, make: Callable[[], Spare | None], generation: int) -> None:
        spare = None
        try:
            spare = make()
        except Exception as exc:  # no spare: the next task spawns as it would without one
            logger.debug("no warm spare made: {}", exc)
        with self._lock:
            self._making = False
            keep = generation == self._generation and not self._closed
            if keep and spare is not None:
                self._spare = spare
                self.counts.made += 1
                self._arm_timer(spare)
        if spare is not None and not keep:
            self._kill(spare, "the pool stopped while it was made")
            spare.run.wait(KILL_WAIT_S)

    def _end_of(self, spare: Spare) -> float:
        """When ``spare`` is killed unused: ``idle_s`` after the pool's last task, and before half
        the run's wall-time limit has passed since its spawn (its monitor counts that from the
        spawn until an adoption restarts it: a spare never reaches it)."""
        end = self._last_used + self.idle_s
        wall = spare.key.limits.wall_seconds
        return min(end, spare.born + wall / 2) if wall is not None else end

    def _arm_timer(self, spare: Spare) -> None:
        """Under the lock: look again at the spare's end (one timer at a time)."""
        if self._timer is None:
            self._timer = threading.Timer(max(0.0, self._end_of(spare) - time.monotonic()), self._idle_check)
            self._timer.name = "warm-spare-idle"
            self._timer.daemon = True
            self._timer.start()

    def _idle_check(self) -> None:
        with self._lock:
            if self._timer is not threading.current_thread():
                return  # cleared meanwhile
            self._timer = None
            spare = self._spare
            if spare is None:
                return
            if time.monotonic() < self._end_of(spare):
                self._arm_timer(spare)
                return
            self._spare = None
        self._kill(spare, "no task came in time")

    def _kill(self, spare: Spare, reason: str) -> None:
        with self._lock:
            self.counts.discarded += 1
        logger.debug("warm spare killed: {}", reason)
        spare.run.stop(f"warm spare not used: {reason}", grace_s=0, status="CANCELLED")
        spare.venv.release()
