"""A Task stopped from outside while its run's clean-up is under way reports the real result.

The result is known before the work dir is removed (``SandboxRun.wait_result``); a pool that
stops or drains in that window (``Task.release``) must hand over what the recipe did, not an
interruption that another executor would run again. A real recipe runs in a real sandbox whose
clean-up the test holds; the Task is driven through its ``release`` with a stand-in launcher
(what the Task reads of it: the run, whether it started, the kill), and the result it hands over
is read back from the pool's real outbox and the Reporter's inbox.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from executor.config import ExecutorConfig
from executor.datahub.aspects import ExecutionRequest
from executor.pool.context import PoolContext
from executor.pool.messages import REPORTER, Finish, RunRequest
from executor.pool.reporter import outbox_of
from executor.pool.task import Task
from executor.sandbox import SandboxRun, SandboxSpec
from executor.supervision import ChildContext, Directory
from tests.unit.test_poller_extensions import Health, Inbox

from .helpers import py

URN = "urn:li:dataHubExecutionRequest:release-during-cleanup"


class Launcher:
    """Stands in for ``SandboxLauncher``: what ``Task.release`` reads of it."""

    def __init__(self, run: SandboxRun) -> None:
        self.run = run
        self.started = True

    def kill(self) -> None:
        """The run's tree is gone already (its result is known)."""

    def describe(self) -> str:
        return "the test's python"

    def log_note(self) -> str:
        return "no log file"


def _request() -> ExecutionRequest:
    return ExecutionRequest(
        urn=URN, id="release-during-cleanup", task="RUN_INGEST", args={}, executor_id="default",
        source_type="file", ingestion_source=None, requested_at_ms=0, actor_urn=None, recipe_text="{}",
        recipe={}, version=None, debug_mode=False, extra_env_vars={}, extra_pip_requirements=[],
        extra_pip_plugins=[])


def test_a_stop_during_the_clean_up_reports_the_real_result(
    tmp_path: Path, make_spec: Callable[..., SandboxSpec],
    held_clean_up: tuple[threading.Event, threading.Event]
) -> None:
    removing, release = held_clean_up
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path / "state"),
        "pools": [{"id": "default"}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=Health())
    directory = Directory()
    reporter = Inbox.start()
    directory.put(REPORTER, reporter)
    run = SandboxRun(make_spec(py("print('done')")))
    try:
        task = Task(ChildContext("task", "root/pool:default/task", 1, None, directory), pool,
                    RunRequest(URN, "m1", 0.0))
        task.launcher = Launcher(run)  # type: ignore[assignment]
        task.request = _request()
        run.start()
        assert removing.wait(30)  # the result is known; its clean-up is held
        task.release()  # the pool stops now
        told: list[Any] = reporter.proxy().received.get(timeout=10)
        assert [(m.status, m.release) for m in told if isinstance(m, Finish)] == [("SUCCESS", False)]
        assert [record["status"] for _, record in outbox_of(pool).pending()] == ["SUCCESS"]
    finally:
        release.set()
        run.wait(60)
        reporter.stop(block=True, timeout=10)
