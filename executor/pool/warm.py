"""A pool's warm spare: one recipe process spawned ahead of the next task, held without input.

With ``pools[*].warm_spare``, a task of the pool whose run has its input asks for a spare
(``offer``): one recipe process spawned through the same path as a task's held run (spawn
server, its own cgroup, scrubbed environment, private work dir, rlimits, ``run_as``, isolation),
for the plain run of that task's venv (no ``--debug``, not a test connection, no task env or
limit overrides), its interpreter and CLI started and blocked reading stdin. The next task whose
spec equals the spare's (``spare_key``: everything but the task's id, log file and the pool
credentials of the moment, which the adopter adds to the masker) adopts it instead of spawning
(``SandboxRun.adopt``); a task of another venv has its ``offer`` replace the spare.

When it is spawned depends on what runs unconfined (``pool.unconfined``, one registry for all
the executor's pools: they share the recipe uid). A recipe is hostile, and in every isolation
but ``bwrap`` (``alone``) a recipe shares the spare's uid and the host's ``/proc``: it could
write into the spare's work dir, open the stdin that will carry the next task's recipe and
secrets, or ptrace it, whichever pool the spare is of. A venv build runs a requested package's
code (pip: an sdist's build backend) outside any isolation, as the recipe's uid. So a spare, of
any pool, is made only while no run outside ``bwrap`` (begun or adopted) and no build is in
progress in any pool (the ``offer`` is kept until the last one ends), and any such run or build
beginning kills every pool's spare (one being made is killed once made). A ``bwrap`` run has its
own pid namespace and ``/proc``: its pool's spare is made at once and stays beside it.

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
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from loguru import logger

from executor.pool.unconfined import UNCONFINED, Unconfined
from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox.spawner import IDLE_S
from executor.sandbox.venvs import ResolvedVenv
from executor.supervision.spare_threads import SPARES

KILL_WAIT_S = 5.0
"""How long ``clear`` waits for a killed spare to be reaped and cleaned up."""
SPARE_ID = "warm-spare"
"""The spare's run id: its work dir, cgroup and threads carry it (the task's log names it)."""
KILLED_UNUSED = "warm spare killed unused"
"""Logged (INFO) once per spare killed without a task: its start-up was waste (the bench counts it)."""
MAKING_WAIT_S = 1.0
"""How long a task waits for a spare being made (its spawn request under way, a few ms; the
spawn server's start, if it had stopped): spawning its own instead would pay the same spawn and,
outside ``bwrap``, doom that spare (a run beside it), which back-to-back tasks did to about a
third of their spares (session 18's bench: 7 of 20 discarded in a 1-worker batch)."""
ADOPTED = "adopts the warm spare"
"""Logged (INFO) once per spare a task adopted (``pool.spare_use``; the bench counts it)."""


def spare_key(spec: SandboxSpec) -> SandboxSpec:
    """What must be equal for a task to adopt a spare: the spec without what names the task (its
    id, its log file) and without the credentials of the moment (the adopter masks its own).

    A copy of the checked ``spec`` with those three fields cleared, not ``replace``: that runs
    ``__init__`` and ``__post_init__`` again (their checks, the argv and secrets scans), twice a
    task, for a spec that only loses fields."""
    key = object.__new__(SandboxSpec)
    vars(key).update(vars(spec), task_id="", log_file=None, secrets=())
    return key


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
    """What became of the pool's spares (for tests; the bench, whose executor is another
    process, counts the ``KILLED_UNUSED`` and ``ADOPTED`` lines of its log)."""

    made: int = 0
    adopted: int = 0
    discarded: int = 0


class WarmSpare:
    """The pool's one spare at most; every method is safe from any thread and never blocks on a
    spawn (``offer`` makes the spare on a spare thread)."""

    def __init__(self, idle_s: float = IDLE_S, unconfined: Unconfined = UNCONFINED) -> None:
        self.idle_s = idle_s
        self.unconfined = unconfined
        """The executor's unconfined runs and builds, of every pool: none may live beside a spare."""
        self.counts = SpareCounts()
        self._lock = threading.Lock()
        self._made = threading.Condition(self._lock)
        """Notified when a making ends (the spare held, or killed and reaped: ``clear`` waits)."""
        self._spare: Spare | None = None
        self._making = False
        self._stale_making = False
        """The spare being made will be killed once made (a run spawned beside it, a stop)."""
        self._closed = False
        self._generation = 0
        """Bumped by ``clear`` and by a run spawned beside it: a spare made across is killed."""
        self._runs = 0
        """The pool's runs in progress: begun (``run_begins``, an adoption), not ended."""
        self._wanted: tuple[Hashable, Callable[[], Spare | None]] | None = None
        """An offer kept until no unconfined run or build, of any pool, is in progress."""
        self._last_used = time.monotonic()
        self._timer: threading.Timer | None = None
        unconfined.join(self)

    def offer(self, kind: Hashable, make: Callable[[], Spare | None]) -> None:
        """A task of the pool has its input: make a spare with ``make`` (on a spare thread)
        unless one of the same ``kind`` exists or one is being made, or the executor drains;
        only once no unconfined run or build of any pool is in progress (kept until then). A
        spare of another kind is killed: the spare follows the pool's latest venv, and one no
        task can adopt is never kept alive by tasks that cannot use it."""
        stale = None
        with self._lock:
            self._last_used = time.monotonic()
            if self._spare is not None and self._spare.kind != kind:
                stale, self._spare = self._spare, None
            if self.unconfined.busy or (self._making and self._stale_making):
                self._wanted, busy = (kind, make), True  # made once that ends
            else:
                busy = self._closed or self._making or self._spare is not None
            if not busy:
                self._making, self._stale_making, generation = True, False, self._generation
        if stale is not None:
            self._kill(stale, "a task of another venv came")
        if busy:
            return
        try:
            SPARES.start(lambda: self._make(make, generation), "warm-spare", "warm-spare")
        except BaseException:
            with self._lock:
                self._making = False
                self._made.notify_all()
            raise

    def take(self, key: SandboxSpec, alone: bool = False) -> Spare | None:
        """The spare, for a task whose spec has ``key`` (``spare_key``); None when there is none
        or it was made for another run (it stays). One being made is waited for, bounded
        (``MAKING_WAIT_S``). The caller adopts it or ``discard``s it; an
        adopted spare is a run in progress until ``run_ended`` (``alone``, outside ``bwrap``: an
        unconfined one, which kills every other pool's spare)."""
        with self._lock:
            self._last_used = time.monotonic()
            self._made.wait_for(lambda: not self._making or self._stale_making or self._closed,
                                MAKING_WAIT_S)
            spare = self._spare
            if spare is None or spare.key != key:
                return None
            self._spare = None
            self.counts.adopted += 1
            self._runs += 1
        if alone:
            self.unconfined.begins("a recipe outside bwrap runs beside it")
        return spare

    def discard(self, spare: Spare, reason: str, alone: bool = False) -> None:
        """Kill ``spare`` (taken with ``alone``, then not adopted after all) now; its run cleans
        up on its own thread."""
        with self._lock:
            self.counts.adopted -= 1
            self._runs = max(0, self._runs - 1)
        self._kill(spare, reason)
        if alone:
            self.unconfined.ends()

    def run_begins(self, alone: bool, build: bool = False) -> None:
        """A run of the pool spawns without the spare; ``run_ended`` follows, with the same
        ``alone`` and ``build``. Either makes it unconfined: every pool's spare is killed now,
        one being made once made, and none is made until it ends (``alone``: its recipe, outside
        ``bwrap``, could tamper with one; ``build``: its venv is built first, whatever the
        isolation, and pip runs the requested packages' code unisolated)."""
        with self._lock:
            self._runs += 1
        if alone or build:
            self.unconfined.begins("a task spawned its own run or builds a venv beside it")

    def run_ended(self, build: bool = False, alone: bool = False) -> None:
        """A run begun (``run_begins``, with its ``alone`` and ``build``) or adopted (``take``)
        has ended: its tree is gone. The last unconfined one of all the pools makes the spare an
        offer kept asked for."""
        with self._lock:
            self._last_used = time.monotonic()  # idle counts from the pool's last run's end
            self._runs = max(0, self._runs - 1)
        if alone or build:
            self.unconfined.ends()

    def doom(self, reason: str) -> None:
        """An unconfined run or build begins (``Unconfined``): kill the spare now, one being
        made once made."""
        with self._lock:
            self._generation += 1
            self._stale_making = self._making
            stale, self._spare = self._spare, None
            self._made.notify_all()  # a task waiting for it (``take``) spawns its own now
        if stale is not None:
            self._kill(stale, reason)

    def retry(self) -> None:
        """No unconfined run or build is in progress any more: make the offer kept, if any."""
        with self._lock:
            wanted = self._due_wanted()
        if wanted is not None:
            self.offer(*wanted)

    def _due_wanted(self) -> tuple[Hashable, Callable[[], Spare | None]] | None:
        """Under the lock: the offer kept, taken, once nothing holds it back any more."""
        wanted = self._wanted
        if wanted is None or self.unconfined.busy or self._making:
            return None
        self._wanted = None
        return wanted

    def clear(self, wait_s: float = KILL_WAIT_S) -> SandboxRun | None:
        """The pool stops or restarts: kill the spare (one being made is killed once made) and
        wait, bounded, until it is reaped and cleaned up, one being made too; the killed run, if
        any. Later tasks may make a new one."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            self._generation += 1
            self._stale_making = self._making
            self._wanted = None
            spare, self._spare = self._spare, None
            timer, self._timer = self._timer, None
            self._made.notify_all()
        if timer is not None:
            timer.cancel()
        if spare is not None:
            self._kill(spare, "the pool stops")
            spare.run.wait(wait_s)
        self.wait_made(max(0.0, deadline - time.monotonic()))
        return spare.run if spare is not None else None

    def wait_made(self, wait_s: float) -> bool:
        """Wait, at most ``wait_s``, until no spare is being made; whether none is."""
        with self._lock:
            return self._made.wait_for(lambda: not self._making, wait_s)

    def close(self, wait_s: float = KILL_WAIT_S) -> SandboxRun | None:
        """The executor drains: kill the spare and make none any more (``clear``)."""
        with self._lock:
            self._closed = True
        return self.clear(wait_s)

    @property
    def ready(self) -> Spare | None:
        """The spare held now, if any (for tests)."""
        return self._spare

    @property
    def making(self) -> bool:
        """Whether a spare is being made now (for tests)."""
        return self._making

    def _make(self, make: Callable[[], Spare | None], generation: int) -> None:
        spare = None
        try:
            spare = make()
        except Exception as exc:  # no spare: the next task spawns as it would without one
            logger.debug("no warm spare made: {}", exc)
        with self._lock:
            keep = generation == self._generation and not self._closed
            if keep and spare is not None:
                self._spare = spare
                self.counts.made += 1
                self._arm_timer(spare)
        if spare is not None and not keep:
            self._kill(spare, "the pool stopped or a run spawned while it was made")
            # Its supervisor may follow this job on this thread (``make_spare``): wait after it.
            try:
                with SPARES.following():
                    SPARES.start(lambda: self._making_over(spare.run), "warm-spare", "warm-spare")
            except Exception:  # no thread to be had: wait here (bounded)
                self._making_over(spare.run)
            return
        self._making_over(None)

    def _making_over(self, unkept: SandboxRun | None) -> None:
        """The making is over: ``unkept`` (a spare made and killed) is waited for (bounded), then
        ``clear`` may return and a kept offer goes."""
        if unkept is not None:
            unkept.wait(KILL_WAIT_S)
        with self._lock:
            self._making = False
            self._made.notify_all()
            wanted = self._due_wanted()
        if wanted is not None:
            self.offer(*wanted)

    def _end_of(self, spare: Spare) -> float:
        """When ``spare`` is killed unused: ``idle_s`` after the pool's last task (its input, or
        its run's end: never while a run of the pool is in progress, the next task may come at
        its end), and before half the run's wall-time limit has passed since its spawn (its
        monitor counts that from the spawn until an adoption restarts it: a spare never reaches
        it)."""
        end = (time.monotonic() if self._runs > 0 else self._last_used) + self.idle_s
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
        logger.info("{}: {}", KILLED_UNUSED, reason)
        spare.run.stop(f"warm spare not used: {reason}", grace_s=0, status="CANCELLED")
        try:  # its venv is in use until its process is gone
            spare.run.when_known(lambda _result: spare.venv.release())
        except RuntimeError:  # a callback is set already (never for a spare): release now
            spare.venv.release()


def close_all(holders: Iterable[WarmSpare], wait_s: float = KILL_WAIT_S) -> None:
    """The executor drains: kill every pool's spare at once, then wait for them together, at most
    ``wait_s`` in all."""
    holders = list(holders)
    killed = [run for holder in holders if (run := holder.close(wait_s=0)) is not None]
    deadline = time.monotonic() + wait_s
    for run in killed:
        run.wait(max(0.0, deadline - time.monotonic()))
    for holder in holders:  # one being made is killed once made: wait for that too
        holder.wait_made(max(0.0, deadline - time.monotonic()))
