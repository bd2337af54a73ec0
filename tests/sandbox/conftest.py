"""Fixtures for sandbox tests: a factory for runs that checks nothing of a run survives it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from executor.sandbox import SandboxLimits, SandboxResult, SandboxRun, SandboxSpec, build_env, run_place
from executor.sandbox.spawner import SpawnServer

from .helpers import marked_processes, wait_until
from .launching import SilentIndex

RunFactory = Callable[..., tuple[SandboxRun, SandboxResult]]
RUN_DEADLINE_S = 180.0
"""A deadline, not a speed check: a gigabyte of output took over 60 s beside three other workers."""


@pytest.fixture(autouse=True)
def _no_sandbox_threads_left() -> Iterator[None]:
    yield
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("sandbox-")], 5,
               "sandbox threads to end")


@pytest.fixture
def work_root(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def make_spec(work_root: Path, tmp_path: Path) -> Callable[..., SandboxSpec]:
    """A spec with test defaults: short grace, small limits unless given, env from build_env."""

    def make(argv: list[str], **overrides: Any) -> SandboxSpec:
        overrides.setdefault("limits", SandboxLimits(kill_grace_s=2.0, sample_interval_s=0.05))
        overrides.setdefault("env", build_env(os.environ, {}, {}, work_root))
        overrides.setdefault("task_id", "test-task")
        return SandboxSpec(argv=argv, work_root=work_root, **overrides)

    return make


@pytest.fixture
def run_sandbox(make_spec: Callable[..., SandboxSpec]) -> Iterator[RunFactory]:
    """Run to the end (deadline ``RUN_DEADLINE_S``); assert that no process of the run is left."""
    runs: list[SandboxRun] = []

    def run(argv: list[str], on_line: Callable[[str], None] | None = None, **overrides: Any
            ) -> tuple[SandboxRun, SandboxResult]:
        sandbox = SandboxRun(make_spec(argv, **overrides), on_line=on_line)
        runs.append(sandbox)
        sandbox.start()
        assert sandbox.work_dir is not None
        result = sandbox.wait(RUN_DEADLINE_S)
        assert result is not None, f"the run did not finish within {RUN_DEADLINE_S:g} s"
        assert marked_processes(sandbox.work_dir.name) == []
        return sandbox, result

    yield run
    for sandbox in runs:
        sandbox.stop("test teardown", grace_s=0)
        assert sandbox.wait(15) is not None


@pytest.fixture(params=["exec wrapper", "spawn server"])
def spawner(request: pytest.FixtureRequest) -> Iterator[SpawnServer | None]:
    """Each way a recipe is started: the exec wrapper (None) and a spawn server of the test's own."""
    if request.param == "exec wrapper":
        yield None
        return
    server = SpawnServer()
    yield server
    server.close()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts in sessions of their own: killed (their groups) and reaped after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60.0)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


@pytest.fixture
def server() -> Iterator[SpawnServer]:
    """A spawn server of the test's own (the warm-spare tests'); modules with a server of their
    own (the spawn server's tests) override it."""
    spawner = SpawnServer()
    yield spawner
    spawner.close()
    assert not psutil.Process().children(recursive=True), "nothing of the runs is left"


@pytest.fixture
def held_clean_up(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """(removing, release): a run's work-dir removal signals ``removing`` and waits for ``release``."""
    removing, release = threading.Event(), threading.Event()
    remove = run_place.remove_work_dir

    def held_remove(path: Path, deep: bool = True) -> bool:
        removing.set()
        assert release.wait(30), "the test never released the clean-up"
        return remove(path, deep=deep)

    monkeypatch.setattr(run_place, "remove_work_dir", held_remove)
    return removing, release


@pytest.fixture
def silent_index(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentIndex]:
    """pip of this test asks only a loopback index that never answers: a build lasts until stopped."""
    with SilentIndex() as index:
        monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("PIP_INDEX_URL", index.url)
        monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
        monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
        yield index
