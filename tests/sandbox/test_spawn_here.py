"""The pickup's short path: a run spawned on the caller's thread right after admission.

``SandboxRun.start(here=True)`` prepares and has the spawn server fork the recipe on the
calling thread (no thread hop before the fork); whatever it cannot do there is left to the
run's supervisor thread: a stop that came first (nothing is spawned), or no working server (the
exec wrapper, whose parent-death signal follows the thread that starts it, is started by the
supervisor only). ``SandboxLauncher.prepare`` makes the run before admission and creates
nothing; the cgroup lookup it uses is cached in ``sandbox.cgroups``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil
import pytest

from executor.pool.sandboxing import SandboxLauncher
from executor.sandbox import SandboxRun, SandboxSpec, cgroups
from executor.sandbox.cgroups import CgroupSupport
from executor.sandbox.spawner import SpawnServer

from .helpers import py, wait_until
from .launching import Outcome, pool_context, request, stubborn_cli_root

ECHO = "import sys; print('got ' + sys.stdin.read(), flush=True)"


class RecordingServer(SpawnServer):
    """A real spawn server that notes which thread asked for each spawn."""

    def __init__(self, python: str = sys.executable) -> None:
        super().__init__(python)
        self.callers: list[str] = []

    def spawn(self, args: Sequence[str], env: Mapping[str, str], cwd: str, stdin_fd: int,
              stdout_fd: int) -> int:
        self.callers.append(threading.current_thread().name)
        return super().spawn(args, env, cwd, stdin_fd, stdout_fd)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    spawner = RecordingServer()
    yield spawner
    spawner.close()
    assert not psutil.Process().children(recursive=True), "close leaves no process behind"


def test_the_recipe_is_forked_on_the_callers_thread_before_start_returns(
        server: RecordingServer, make_spec: Callable[..., SandboxSpec]) -> None:
    run = SandboxRun(make_spec(py(ECHO), hold_input=True), spawner=server)
    run.start(here=True)
    assert run.pid is not None, "spawned before start returned"
    assert server.callers == [threading.current_thread().name]
    assert psutil.Process(run.pid).ppid() == os.getpid()
    run.give_input(b"its input", ())
    result = run.wait(60)
    assert result is not None and result.exit_code == 0, result
    assert "got its input" in result.log_text


def test_a_stop_before_the_start_spawns_nothing(server: RecordingServer,
                                                make_spec: Callable[..., SandboxSpec]) -> None:
    run = SandboxRun(make_spec(py(ECHO), hold_input=True), spawner=server)
    run.stop("cancelled first", status="CANCELLED")
    run.start(here=True)
    result = run.wait(60)
    assert result is not None and result.outcome == "stopped" and run.pid is None, result
    assert server.callers == [] and "nothing was run" in result.log_text


def test_without_a_working_server_the_supervisor_starts_the_exec_wrapper(
        make_spec: Callable[..., SandboxSpec], work_root: Path) -> None:
    """The wrapper's parent-death signal follows the thread that started it: never the caller's."""
    broken = RecordingServer(python=str(work_root.parent / "no-python-here"))
    try:
        run = SandboxRun(make_spec(py(ECHO), hold_input=True, task_id="fallback"), spawner=broken)
        run.start(here=True)
        wait_until(lambda: run.pid is not None, 30, "the supervisor to start the wrapper")
        supervisor = next(t for t in threading.enumerate() if t.name == "sandbox-fallback")
        children = Path(f"/proc/{os.getpid()}/task/{supervisor.native_id}/children").read_text().split()
        assert str(run.pid) in children, "started by the supervisor thread"
        run.give_input(b"still runs", ())
        result = run.wait(60)
        assert result is not None and result.exit_code == 0 and "got still runs" in result.log_text, result
    finally:
        broken.close()


def test_a_launch_is_prepared_before_admission_and_spawned_on_the_tasks_thread(
        server: RecordingServer, tmp_path: Path) -> None:
    pool = dataclasses.replace(pool_context(tmp_path, stubborn_cli_root(tmp_path / "venvs")), spawner=server)
    launcher = SandboxLauncher(pool, "urn:li:dataHubExecutionRequest:prepared")
    marker = tmp_path / "spawned"
    wanted = request("prepared", marker)
    launcher.prepare(wanted)
    prepared = launcher._prepared
    assert prepared is not None, "the run's spec was made before admission"
    assert launcher.run is None and not launcher.prestarted
    assert not (pool.state_dir / "work").exists() and not (pool.state_dir / "logs").exists(), "nothing made"
    assert server.callers == [], "no spawn asked for"
    wait_until(lambda: server.pid is not None, 30, "the spawn server prepare started")
    assert [child.pid for child in psutil.Process().children()] == [server.pid], "the server alone"
    outcome = Outcome()
    launcher.prestart(wanted, on_exit=outcome)
    try:
        assert launcher.run is not None and launcher.run.spec is prepared[2], "the spec made before admission"
        assert launcher.run.pid is not None, "spawned by prestart itself"
        assert server.callers == [threading.current_thread().name]
        launcher.give_secrets({})
        wait_until(lambda: marker.exists(), 30, "the recipe to get its input")
    finally:
        launcher.kill()
        pool.warm.close()  # the pool's stop: its warm spare (on by default) goes with it
    assert outcome.wait(30) is not None


def test_the_cgroup_lookup_serves_launches_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[CgroupSupport] = []

    def detect() -> CgroupSupport:
        looks.append(CgroupSupport("none", reason=f"look {len(looks)}"))
        return looks[-1]

    monkeypatch.setattr(cgroups, "detect_cgroups", detect)
    monkeypatch.setattr(cgroups, "_detected", None)
    first = cgroups.cached_cgroups()
    assert cgroups.cached_cgroups() is first and len(looks) == 1
    assert cgroups.cached_cgroups(max_age_s=-1) is not first and len(looks) == 2
