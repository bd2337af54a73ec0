"""The Task's bridge to the sandbox: picks the venv, builds the run's spec, and starts it.

Venv resolution (which may build a cached venv with pip) and the run itself happen on the
launcher's own thread, so the Task actor never blocks on them and stays free to cancel.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.datahub.aspects import ExecutionRequest
from executor.errors import ExecutorError
from executor.pool.context import PoolContext
from executor.pool.messages import Cancel
from executor.pool.outcome import TEST_CONNECTION, stdin_envelope
from executor.sandbox import SandboxResult, SandboxRun, SandboxSpec, build_env, limits_from_settings
from executor.sandbox.result import format_measurements
from executor.sandbox.venvs import ResolvedVenv, VenvPolicy, VenvRequest, resolve_venv

REPORT_FILE = "report.json"
MiB = 1024 * 1024


@dataclass(frozen=True)
class LaunchFailed:
    """The recipe never started: no venv, a policy refusal, a bad request."""

    error: str


class SandboxLauncher:
    """One request's sandbox run, driven by its Task actor."""

    def __init__(self, pool: PoolContext, urn: str) -> None:
        self.pool = pool
        self.task_id = urn.rsplit(":", 1)[-1]
        self.run: SandboxRun | None = None
        self.venv: ResolvedVenv | None = None
        self._lock = threading.Lock()
        self._stop: tuple[str, str] | None = None
        self._thread: threading.Thread | None = None
        self._log_file: Path | None = None

    @property
    def started(self) -> bool:
        """True once ``start`` was called: the recipe may have run (part of) its work."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        """True from ``start`` until the run has ended."""
        return self._thread is not None and self._thread.is_alive()

    def start(
        self,
        request: ExecutionRequest,
        secrets: dict[str, str],
        on_exit: Callable[[SandboxResult | LaunchFailed], None],
    ) -> None:
        """Resolve the venv and run the recipe on a thread; ``on_exit`` gets the outcome."""
        plugin = request.source_plugin
        if plugin is None:
            raise ExecutorError("the recipe names no source type (source.type)")
        venv_request = VenvRequest(
            plugin=plugin,
            version=request.version or self.pool.pool.venvs.default_version,
            extra_plugins=tuple(request.extra_pip_plugins),
            extra_requirements=tuple(request.extra_pip_requirements),
        )
        self._thread = threading.Thread(
            target=self._main,
            args=(request, venv_request, secrets, on_exit),
            name=f"launch-{self.task_id}",
            daemon=True,
        )
        self._thread.start()

    def _main(
        self,
        request: ExecutionRequest,
        venv_request: VenvRequest,
        secrets: dict[str, str],
        on_exit: Callable[[SandboxResult | LaunchFailed], None],
    ) -> None:
        try:
            self.venv = resolve_venv(venv_request, self._policy())
            spec = self._spec(request, self.venv, secrets)
        except (ExecutorError, OSError) as exc:
            on_exit(LaunchFailed(str(exc)))
            return
        run = SandboxRun(spec)
        with self._lock:
            self.run = run
            pending = self._stop
        run.start()
        if pending is not None:
            run.stop(pending[0], status=pending[1])
        result = run.wait()
        self.venv.release()
        on_exit(result if result is not None else LaunchFailed("the sandbox ended without a result"))

    def _policy(self) -> VenvPolicy:
        venvs = self.pool.pool.venvs
        return VenvPolicy(
            bundled_root=venvs.bundled_root,
            dependency_resolution=venvs.dependency_resolution,
            cache_dir=self.pool.state_dir / "venvs",
            cache_max_bytes=venvs.cache_mb * MiB,
        )

    def _spec(self, request: ExecutionRequest, venv: ResolvedVenv, secrets: dict[str, str]) -> SandboxSpec:
        limits = limits_from_settings(self.pool.pool.limits)
        limits = limits.with_task_overrides(request.extra_env_vars)
        argv = venv.ingest_argv(request.debug_mode)
        if request.task == TEST_CONNECTION:
            argv.append("--test-source-connection")
        env = build_env(os.environ, self.pool.pool.env, request.extra_env_vars, home=Path("/nonexistent"))
        return SandboxSpec(
            argv=argv,
            stdin=stdin_envelope(request.recipe_text, secrets),
            env=env,
            work_root=self.pool.state_dir / "work",
            limits=limits,
            secrets=tuple(secrets.values()),
            log_file=self._new_log_file(),
            task_id=self.task_id,
            report_file=REPORT_FILE,
            isolation=self.pool.pool.isolation,
            hide_paths=self._hidden_paths(),
        )

    def _hidden_paths(self) -> tuple[Path, ...]:
        """What a bwrap-isolated recipe must not see: our outbox, logs, config and secrets mount."""
        state = self.pool.state_dir
        return (
            state / "outbox",
            state / "logs",
            self.pool.pool.secrets.file_dir,
            Path("/etc/remote-executor"),
        )

    def stop(self, reason: str, status: str) -> None:
        """SIGTERM the tree (SIGKILL after the grace); before the start, the run stops at once."""
        with self._lock:
            self._stop = (reason, status)
            run = self.run
        if run is not None:
            run.stop(reason, status=status)

    def kill(self) -> None:
        """At the Task's end: no process of this request may outlive it."""
        self.stop("the task ended", "FAILURE")
        with self._lock:
            run = self.run
        if run is not None and run.wait(0) is None:
            run.stop("the task ended", grace_s=0, status="FAILURE")
            run.wait(10)

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
        """Where this attempt's full masked log is kept; None when the recipe never started."""
        return self._log_file if self.run is not None else None

    def log_note(self) -> str:
        """``log: <path>``, or why there is none (for the task's closing log line)."""
        path = self.log_path()
        return f"log: {path}" if path is not None else "no task log: the recipe never started"


def describe_result(result: Any, cancel: Cancel | None) -> tuple[str, str]:
    """The terminal status and the summary lines for the report."""
    if isinstance(result, LaunchFailed):
        return "FAILURE", f"The recipe could not be started: {result.error}"
    assert isinstance(result, SandboxResult)
    status = result.suggested_status
    if result.outcome == "stopped" and cancel is not None:
        status = cancel.status
    return status, f"{result.summary()}\nMeasured: {format_measurements(result)}."


def final_log(result: Any) -> str:
    """The masked head and tail of the run's output."""
    return result.log_text if isinstance(result, SandboxResult) else ""


def structured_report(result: Any) -> str | None:
    """The masked ``--report-to`` file, when the CLI wrote one."""
    return result.report_json if isinstance(result, SandboxResult) else None
