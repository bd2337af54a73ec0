"""Issue 11.6: a kill kills now, whatever the grace, and one task's kill never waits on another's.

The programs here ignore SIGTERM, so only SIGKILL ends them, and the grace is two minutes:
a run that ends within the tests' deadlines (far shorter) was killed without waiting for it.
The measured times are printed (``-s``) for docs/reliability.md, never asserted.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.pool.sandboxing import SandboxLauncher
from executor.sandbox import SandboxLimits, SandboxResult, SandboxRun, SandboxSpec

from .helpers import marked_processes, py, wait_until
from .launching import Outcome, pool_context, request, stubborn_cli_root

LONG_GRACE_S = 120.0
DEADLINE_S = 30.0
"""Far below the grace: reaching a result within it means nobody waited for the grace."""
STUBBORN = """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(600)
"""


def _started(make_spec: Callable[..., SandboxSpec]) -> tuple[SandboxRun, list[str]]:
    lines: list[str] = []
    limits = SandboxLimits(kill_grace_s=LONG_GRACE_S, sample_interval_s=0.05)
    run = SandboxRun(make_spec(py(STUBBORN), limits=limits), on_line=lines.append)
    run.start()
    wait_until(lambda: "ready" in lines, 30, "the program to start")
    return run, lines


@pytest.mark.parametrize("when", ["together", "after the SIGTERM"])
def test_a_zero_grace_stop_is_never_dropped(make_spec: Callable[..., SandboxSpec], when: str) -> None:
    run, lines = _started(make_spec)
    run.stop("cancelled by the user")  # the long grace
    if when == "after the SIGTERM":
        wait_until(lambda: any("SIGTERM to the process tree" in line for line in lines), 30, "the SIGTERM")
    began = time.monotonic()
    run.stop("the task ended", grace_s=0, status="FAILURE")
    result = run.wait(DEADLINE_S)
    assert result is not None, f"the zero-grace stop waited for the {LONG_GRACE_S:.0f} s grace"
    print(f"\nkill ({when}) -> tree gone and cleaned up in {time.monotonic() - began:.3f} s")
    assert result.outcome == "stopped" and result.signal == signal.SIGKILL
    assert result.stop_reason == "cancelled by the user" and result.suggested_status == "CANCELLED"
    assert run.work_dir is not None and marked_processes(run.work_dir.name) == []


def test_a_stop_before_the_spawn_runs_nothing(make_spec: Callable[..., SandboxSpec], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    secret = "stdin-secret-" + uuid.uuid4().hex
    spec = make_spec(py(f"open({str(marker)!r}, 'w').close()"), stdin=secret.encode(), secrets=[secret])
    run = SandboxRun(spec)
    run.stop("cancelled before it started")
    run.start()
    result = run.wait(DEADLINE_S)
    assert isinstance(result, SandboxResult)
    assert result.outcome == "stopped" and result.suggested_status == "CANCELLED" and result.exit_code is None
    assert "nothing was run" in result.log_text
    assert not marker.exists() and run.work_dir is not None and not run.work_dir.exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _running_launcher(tmp_path: Path, name: str) -> tuple[SandboxLauncher, Outcome, Path]:
    pool = pool_context(tmp_path, stubborn_cli_root(tmp_path / f"venvs-{name}"), grace_s=LONG_GRACE_S)
    marker = tmp_path / f"marker-{name}"
    launcher = SandboxLauncher(pool, f"urn:li:dataHubExecutionRequest:{uuid.uuid4()}")
    outcome = Outcome()
    launcher.start(request(name, marker), {"S": "a-secret-value"}, on_exit=outcome)
    wait_until(lambda: "ready" in launcher.log_tail(), 60, f"{name} to start")
    return launcher, outcome, marker


def test_kill_ends_the_tree_at_once_whatever_the_grace(tmp_path: Path) -> None:
    launcher, outcome, _ = _running_launcher(tmp_path, "one")
    run = launcher.run
    assert run is not None and run.work_dir is not None
    began = time.monotonic()
    launcher.kill()
    print(f"\nSandboxLauncher.kill with a {LONG_GRACE_S:.0f} s grace: {time.monotonic() - began:.3f} s")
    result = outcome.wait(DEADLINE_S)
    assert isinstance(result, SandboxResult) and result.signal == signal.SIGKILL
    assert marked_processes(run.work_dir.name) == []


def test_tasks_are_interrupted_at_once_not_one_after_another(tmp_path: Path) -> None:
    started = [_running_launcher(tmp_path, name) for name in ("a", "b", "c")]
    began = time.monotonic()
    for launcher, _, _ in started:
        launcher.interrupt()  # returns at once: the runner can stop all its tasks this way
    killers = [threading.Thread(target=launcher.kill) for launcher, _, _ in started]
    for thread in killers:
        thread.start()
    for thread in killers:
        thread.join(DEADLINE_S)
    print(f"\n3 tasks interrupted, then killed in parallel: {time.monotonic() - began:.3f} s")
    assert not any(t.is_alive() for t in killers)
    for launcher, outcome, _ in started:
        result = outcome.wait(DEADLINE_S)
        assert isinstance(result, SandboxResult) and result.signal == signal.SIGKILL
        assert launcher.run is not None and launcher.run.work_dir is not None
        assert marked_processes(launcher.run.work_dir.name) == []
