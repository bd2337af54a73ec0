"""The Task's bridge to the sandbox: picks the venv, builds the run's spec, and starts it.

A venv build (pip, for a dynamic version) and the wait for that run's result happen on the
launcher's own thread, so the Task actor never blocks on them and stays free to cancel; a run
spawned at admission needs no such thread: its own supervisor hands the result on
(``SandboxRun.when_known``).

The start is in steps so that little is left between admission and the spawn, and the
recipe's start-up overlaps the secret fetch: ``prepare`` (while the request waits for
admission) picks a venv that needs no build and makes the run's spec, creating nothing;
``prestart`` (admitted) makes the work dir, the task cgroup and the log file and has the spawn
server fork the recipe, on the Task's thread, which joins its cgroup, starts its interpreter
and then waits for its stdin; ``give_secrets`` brings that stdin (the recipe and its secrets)
once they resolved. Until then the recipe has nothing secret and none of its output is read
(``docs/sandbox.md``, "Spawned before the secrets"); a run stopped before it is killed and
leaves nothing behind. With the pool's ``warm_spare``, ``prestart`` adopts the pool's warm spare
when its spec is this run's, else tells the holder a run spawns beside it, and
``give_secrets`` asks for the next one (``pool.warm``: it is made only once no run outside
``bwrap`` and no venv build is in progress in any pool: ``pool.unconfined``)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from executor.datahub.aspects import ExecutionRequest
from executor.errors import ExecutorError
from executor.pool.context import PoolContext
from executor.pool.outcome import stdin_envelope
from executor.pool.run_end import LaunchFailed, LaunchStopped
from executor.pool.run_specs import run_spec
from executor.pool.spare_use import SpareUse
from executor.safe_names import safe_name
from executor.sandbox import SandboxResult, SandboxRun, SandboxSpec
from executor.sandbox.identity import RunAs, prepare_work_root, resolve_run_as, work_base
from executor.sandbox.venvs import BUNDLED, NATIVE, ResolvedVenv, VenvPolicy, VenvRequest, resolve_venv
from executor.supervision.spare_threads import SPARES

MiB = 1024 * 1024
KILL_WAIT_S = 5.0
"""How long ``kill`` waits for a SIGKILLed tree to be reaped and its work dir removed."""


class SandboxLauncher:
    """One request's sandbox run, driven by its Task actor.

    A stop is honoured in every phase: during the venv build (the build is stopped), before
    the spawn (nothing is spawned, no secret is written anywhere) and while the recipe runs.
    ``interrupt`` kills the tree now without waiting, so a runner can stop all its tasks at
    once; ``kill`` does the same and waits (bounded) for the tree to be gone.
    """

    def __init__(self, pool: PoolContext, urn: str) -> None:
        self.pool = pool
        self.task_id = safe_name(urn.rsplit(":", 1)[-1])
        self.run: SandboxRun | None = None
        self.venv: ResolvedVenv | None = None
        self._lock = threading.Lock()
        self._stop: tuple[str, str] | None = None
        self._stopping = threading.Event()
        """Set by any stop: a venv build in progress ends, a lock wait gives up."""
        self._thread: threading.Thread | None = None
        """The launch thread, when one resolves the venv or spawns without the server."""
        self._prestarted = False
        self.spare = SpareUse(pool, self.task_id)
        """This launch's use of the pool's warm spare (``pool.spare_use``)."""
        self._ended = threading.Event()
        """Set once the outcome was handed to ``on_exit``."""
        self._log_file: Path | None = None
        self._request: ExecutionRequest | None = None
        self._secrets: dict[str, str] | None = None
        """The recipe's secrets once given (``give_secrets``); None before."""
        self._prepared: tuple[ExecutionRequest, ResolvedVenv, SandboxSpec] | None = None
        """What ``prepare`` made for a request: its venv and its run's spec (the run itself is
        made at ``prestart`` unless a warm spare is adopted: most runs of a busy pool are)."""

    @property
    def started(self) -> bool:
        """True once the recipe was given its input: it may have run (part of) its work."""
        return self._secrets is not None

    @property
    def prestarted(self) -> bool:
        """True once ``prestart`` was called: a recipe process may exist, waiting for its input."""
        return self._prestarted

    @property
    def running(self) -> bool:
        """True from ``prestart`` until the run has ended."""
        return self._prestarted and not self._ended.is_set()

    def start(
        self,
        request: ExecutionRequest,
        secrets: dict[str, str],
        on_exit: Callable[[SandboxResult | LaunchFailed | LaunchStopped], None],
    ) -> None:
        """``prestart`` and ``give_secrets`` at once (the secrets are already known)."""
        self.prestart(request, on_exit)
        self.give_secrets(secrets)

    def prepare(self, request: ExecutionRequest) -> None:
        """While the request waits for admission: pick a venv that needs no build (bundled,
        native) and the run's spec (nothing of the run's own is made, created or spawned: that
        waits for ``prestart``). Only with a spawn server: without one the launch thread does it
        all. A failure here is left to the launch thread, which meets and reports it."""
        if self._prepared is not None and self._prepared[0] is request:
            return
        self._prepared = None
        if self.pool.spawner is None:
            return
        self.pool.spawner.start()  # one that stopped while idle starts while admission is decided
        try:
            venv_request = self._venv_request(request)
            if venv_request.version not in (BUNDLED, NATIVE):
                return  # a dynamic venv is built (or waited for) on the launch thread, once admitted
            venv = resolve_venv(venv_request, self._policy())
            spec = self._spec(request, venv)
        except Exception as exc:  # the launch thread resolves again and reports the failure
            logger.debug("run of {} not prepared before admission: {}", self.task_id, exc)
            return
        self._prepared = (request, venv, spec)

    def prestart(
        self,
        request: ExecutionRequest,
        on_exit: Callable[[SandboxResult | LaunchFailed | LaunchStopped], None],
    ) -> None:
        """Spawn the recipe without its input; ``on_exit`` gets the outcome. Raises
        ``ExecutorError`` for a request it cannot start.

        A run ``prepare`` made is spawned here, on the caller's thread, through the spawn server
        (no thread hop before the fork, none of the secret fetch's or RUNNING's CPU beside it:
        the caller asks for those next), and its supervisor thread hands the result to
        ``on_exit``; anything else (a venv to build, no spawn server) is resolved, prepared and
        spawned on the launch thread, which then waits for the result.
        """
        venv_request = self._venv_request(request)
        self._request = request
        self.prepare(request)  # done already when the Task called it before admission
        prepared, self._prepared = self._prepared, None
        if prepared is not None and self.pool.spawner is not None:
            _, venv, spec = prepared
            adopted = self.spare.adopt(spec)
            if adopted is not None:
                venv.release()
                venv, run = adopted.venv, adopted.run
            else:
                run = SandboxRun(spec, spawner=self.pool.spawner)
            with self._lock:
                if self._stop is None:
                    self.venv, self.run = venv, run
            if self.run is run:
                if adopted is None:
                    self.spare.begins()
                    try:
                        run.start(here=True)
                    except BaseException:
                        self.spare.ends()
                        raise
                self._prestarted = True
                run.when_known(functools.partial(self._hand_over, on_exit))
                return
            if adopted is not None:  # a stop came first: the spare ends unused, as a stopped run would
                self.spare.discard(adopted, "the task was stopped before it started")
        self._prestarted = True
        self._thread = threading.Thread(
            target=self._main,
            args=(request, venv_request, on_exit),
            name=f"launch-{self.task_id}",
            daemon=True,
        )
        self._thread.start()

    def _venv_request(self, request: ExecutionRequest) -> VenvRequest:
        plugin = request.source_plugin
        if plugin is None:
            raise ExecutorError("the recipe names no source type (source.type)")
        return VenvRequest(
            plugin=plugin,
            version=request.version or self.pool.pool.venvs.default_version,
            extra_plugins=tuple(request.extra_pip_plugins),
            extra_requirements=tuple(request.extra_pip_requirements),
        )

    def give_secrets(self, secrets: dict[str, str]) -> None:
        """The recipe's input (the recipe and ``secrets`` on stdin): from now on it runs its work.
        Once only, after ``prestart``; a launch already stopped never gets it."""
        with self._lock:
            if self._request is None or self._secrets is not None:
                raise RuntimeError("give_secrets comes once, after prestart")
            if self._stop is not None:
                return  # stopped first: the run ends without its input (``LaunchStopped`` or stopped)
            self._secrets = dict(secrets)
            run = self.run
        if run is not None:  # else the launch thread gives it as soon as its run exists
            self._give(run, self._secrets)
        self.spare.offer(self._venv_request(self._request), lambda: (self._identity, self._policy()))

    def _give(self, run: SandboxRun, secrets: dict[str, str]) -> None:
        assert self._request is not None
        run.give_input(stdin_envelope(self._request.recipe_text, secrets), tuple(secrets.values()))

    def _main(
        self,
        request: ExecutionRequest,
        venv_request: VenvRequest,
        on_exit: Callable[[SandboxResult | LaunchFailed | LaunchStopped], None],
    ) -> None:
        try:
            outcome = self._resolve_and_run(request, venv_request)
        except Exception as exc:  # whatever went wrong, the Task must hear an outcome
            if not isinstance(exc, (ExecutorError, OSError)):
                logger.opt(exception=True).error("launching {} failed unexpectedly", self.task_id)
            outcome = self._stopped() or LaunchFailed(str(exc) or type(exc).__name__)
        except BaseException:
            self._hand_over(on_exit, None)
            raise
        self._hand_over(on_exit, outcome)

    def _hand_over(self, on_exit: Callable[[SandboxResult | LaunchFailed | LaunchStopped], None],
                   outcome: SandboxResult | LaunchFailed | LaunchStopped | None) -> None:
        """The launch's end: the venv released (its use lock never outlives the launch), the
        spare's holder told, then ``outcome`` to ``on_exit`` (none: the launch thread died of a
        ``BaseException``). A failure of the spare's bookkeeping (making a kept offer's spare:
        no thread to be had) costs a spare, never the outcome the Task waits for. A spare made
        now (the kept offer) is made on this thread once the run's job has ended (the run is
        done, its waiters free; a deep work dir's walk comes first): no second thread is woken
        for it (``SpareThreads.following``)."""
        try:
            if self.venv is not None:
                self.venv.release()
            try:
                with SPARES.following():  # a spare made now is made on this thread, once free
                    self.spare.ends()
            except Exception as exc:
                logger.warning("{}: the warm spare's bookkeeping failed at the run's end: {}",
                               self.task_id, exc)
            if outcome is not None:
                on_exit(outcome)
        except Exception as exc:  # the Task ended first (its teardown killed the run): expected
            logger.debug("the Task of {} did not take its outcome: {}", self.task_id, type(exc).__name__)
        finally:
            self._ended.set()

    def _resolve_and_run(
        self, request: ExecutionRequest, venv_request: VenvRequest
    ) -> SandboxResult | LaunchFailed | LaunchStopped:
        stopped = self._stopped()
        if stopped is not None:
            return stopped
        self.spare.begins(build=venv_request.version not in (BUNDLED, NATIVE))  # before any pip
        self.venv = resolve_venv(venv_request, self._policy(), stop=self._stopping)
        run = SandboxRun(self._spec(request, self.venv), spawner=self.pool.spawner)
        with self._lock:
            stopped = LaunchStopped(*self._stop) if self._stop is not None else None
            if stopped is None:
                self.run = run  # from now on ``stop`` reaches the run, which then never spawns
            secrets = self._secrets
        if stopped is not None:
            return stopped
        if secrets is not None:  # given while the venv was resolved: the run has it from its start
            self._give(run, secrets)
        run.start()
        return self._result_of(run)

    @staticmethod
    def _result_of(run: SandboxRun) -> SandboxResult | LaunchFailed:
        result = run.wait_result()  # reported before the clean-up; ``kill`` waits for that
        return result if result is not None else LaunchFailed("the sandbox ended without a result")

    def _stopped(self) -> LaunchStopped | None:
        with self._lock:
            return LaunchStopped(*self._stop) if self._stop is not None else None

    def _policy(self) -> VenvPolicy:
        """Dynamic venvs of a ``run_as`` pool are built as its recipe user, in a cache it can reach
        (``<work root>/.venvs``: no task's work dir starts with a dot)."""
        venvs = self.pool.pool.venvs
        run_as, work_root = self._identity
        cache = self.pool.state_dir / "venvs" if run_as is None else work_root / ".venvs"
        return VenvPolicy(
            bundled_root=venvs.bundled_root,
            dependency_resolution=venvs.dependency_resolution,
            cache_dir=cache,
            cache_max_bytes=venvs.cache_mb * MiB,
            run_as=run_as,
        )

    def _run_as(self) -> RunAs | None:
        settings = self.pool.pool.run_as
        if settings is None:
            return None
        return resolve_run_as(settings.user, settings.group, f"pools[{self.pool.pool_id}].run_as")

    def _work_root(self) -> Path:
        return prepare_work_root(work_base(self.pool.config.state_dir, self.pool.config.work_dir),
                                 self.pool.pool_id)

    def _spec(self, request: ExecutionRequest, venv: ResolvedVenv) -> SandboxSpec:
        return run_spec(self.pool, self._identity, venv, self.task_id, self._new_log_file(), request.task,
                        request.debug_mode, request.extra_env_vars)

    @functools.cached_property
    def _identity(self) -> tuple[RunAs | None, Path]:
        """The pool's ``run_as`` (None: the executor's own uid) and where its work dirs go; looked
        up once per task (user and group names may go to NSS, the work root is made on the way).

        A dynamic venv of a ``run_as`` pool was built as the recipe user and then made the
        executor's and read-only (``sandbox.venv_owner``), in a cache outside the state dir.
        """
        run_as = self._run_as()
        if run_as is None:
            return None, self.pool.state_dir / "work"
        return run_as, self._work_root()

    def stop(self, reason: str, status: str, grace_s: float | None = None) -> None:
        """SIGTERM the tree (SIGKILL after ``grace_s``, default the limits' grace); non-blocking.

        Before the spawn, the recipe is never started; during a venv build, the build stops.
        """
        with self._lock:
            if self._stop is None:
                self._stop = (reason, status)
            run = self.run
        self._stopping.set()
        if run is not None:
            run.stop(reason, grace_s=grace_s, status=status)

    def interrupt(self, reason: str = "the task ended") -> None:
        """SIGKILL the tree now and return at once (the runner interrupts all its tasks so)."""
        self.stop(reason, "FAILURE", grace_s=0)

    def kill(self, wait_s: float = KILL_WAIT_S) -> None:
        """At the Task's end: no process of this request may outlive it. SIGKILL now, whatever
        the grace, then wait at most ``wait_s`` for the tree to be reaped and cleaned up."""
        self.interrupt()
        deadline = time.monotonic() + wait_s
        with self._lock:
            run = self.run
        if run is not None:
            run.wait(wait_s)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        elif thread is None and self._prestarted:
            self._ended.wait(max(0.0, deadline - time.monotonic()))

    def log_tail(self) -> str:
        """The masked tail of the log so far."""
        return self.run.log_tail() if self.run is not None else ""

    def describe(self) -> str:
        """Which venv runs the recipe (after resolution)."""
        return f"{self.venv.kind} venv {self.venv.path}" if self.venv is not None else "venv being resolved"

    def _new_log_file(self) -> Path:
        """This attempt's log: ``<id>.log``, or ``<id>.attempt-N.log`` when a rerun finds earlier ones."""
        logs = self.pool.state_dir / "logs"
        path, attempt = logs / f"{self.task_id}.log", 1
        while path.exists():
            attempt += 1
            path = logs / f"{self.task_id}.attempt-{attempt}.log"
        self._log_file = path
        return path

    def log_path(self) -> Path | None:
        """Where this attempt's full masked log is kept; None when the recipe never started (a
        recipe spawned early but never given its input leaves no log: ``SandboxRun._clean_up``)."""
        path = self._log_file if self.run is not None else None
        return path if path is not None and path.exists() else None

    def log_note(self) -> str:
        """``log: <path>``, or why there is none (for the task's closing log line)."""
        path = self.log_path()
        return f"log: {path}" if path is not None else "no task log: the recipe never started"


def work_roots(pool: PoolContext) -> list[Path]:
    """Where the pool's runs keep their work dirs and no other executor's do (``sandboxing``):
    its state dir's ``work``, and a ``run_as`` pool's root under the default work base (a
    configured ``work_dir`` may be shared, so it is not swept)."""
    roots = [pool.state_dir / "work"]
    if pool.pool.run_as is not None and pool.config.work_dir is None:
        roots.append(work_base(pool.config.state_dir, None) / pool.pool_id)
    return roots
