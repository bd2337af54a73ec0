"""Issue 11.7: the launch thread honours a pending stop, and never leaks the venv lock.

A task stopped while its venv is resolved never spawns ``datahub`` (so its secrets go nowhere);
a stop or a kill during a pip build kills the build (pip here talks to a loopback index that
never answers, so only a stop ends it); the per-step timeout ends a hung build too; the venv's
use lock is released when building the spec fails.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from executor.pool.run_end import LaunchStopped
from executor.pool.sandboxing import SandboxLauncher
from executor.sandbox import SandboxResult
from executor.sandbox.stoppable import StepTimedOut, Stopped, run_lines
from executor.sandbox.venv_build import PipVenvBuilder
from executor.sandbox.venv_cache import META, VenvCache, cache_key
from executor.sandbox.venvs import VenvRequest

from .helpers import wait_until
from .launching import STUBBORN, Outcome, SilentIndex, pool_context, request, stubborn_cli_root

DEADLINE_S = 30.0
SECRET = "launch-secret-" + uuid.uuid4().hex


def _pip_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "pip" in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _files_holding(root: Path, value: str) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return [p for p in files if value.encode() in p.read_bytes()]


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_stop_during_a_pip_build_stops_it_and_nothing_is_spawned(
        tmp_path: Path, silent_index: SilentIndex, how: str) -> None:
    pool = pool_context(tmp_path, tmp_path / "no-bundled", dynamic=True)
    marker = tmp_path / "spawned"
    launcher = SandboxLauncher(pool, f"urn:li:dataHubExecutionRequest:{uuid.uuid4()}")
    outcome = Outcome()
    launcher.start(request("dyn", marker, version="0.0.1", plugin="file"), {"S": SECRET}, on_exit=outcome)
    wait_until(lambda: silent_index.connections > 0, 120, "pip to ask the index")
    began = time.monotonic()
    if how == "stop":
        launcher.stop("cancelled by the user", "CANCELLED")
    else:
        launcher.kill()
    result = outcome.wait(DEADLINE_S)
    print(f"\n{how} during the pip build -> outcome in {time.monotonic() - began:.3f} s")
    assert isinstance(result, LaunchStopped)
    assert result.status == ("CANCELLED" if how == "stop" else "FAILURE")
    assert launcher.run is None and not marker.exists()
    wait_until(lambda: not _pip_processes(), DEADLINE_S, "pip to be gone")
    cache = pool.state_dir / "venvs"
    assert not list((cache / "store").iterdir()), "the half-built venv was left behind"
    assert not _files_holding(tmp_path, SECRET)


def test_a_stop_before_the_venv_is_resolved_spawns_nothing(tmp_path: Path) -> None:
    pool = pool_context(tmp_path, stubborn_cli_root(tmp_path / "venvs"))
    marker = tmp_path / "spawned"
    launcher = SandboxLauncher(pool, f"urn:li:dataHubExecutionRequest:{uuid.uuid4()}")
    launcher.stop("cancelled by the user", "CANCELLED")  # the Task was cancelled meanwhile
    outcome = Outcome()
    launcher.start(request("early", marker), {"S": SECRET}, on_exit=outcome)
    result = outcome.wait(DEADLINE_S)
    assert result == LaunchStopped("cancelled by the user", "CANCELLED")
    assert not marker.exists() and not _files_holding(tmp_path, SECRET)


def test_a_hung_step_times_out_and_its_whole_group_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hang = ("import os, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
            "print('hanging', flush=True)\n"
            "time.sleep(600)\n")
    lines: list[str] = []
    with pytest.raises(StepTimedOut, match="took longer than 1 s"):
        run_lines([sys.executable, "-c", hang], dict(os.environ), lines.append, None, 1.0, "a step")
    assert lines == ["hanging"]
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
                   DEADLINE_S, f"process {pid} to be gone")


def test_a_lock_wait_ends_on_a_stop(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path / "cache", 1 << 30, stop=threading.Event())
    venv_request = VenvRequest("file", "0.0.1")
    lock_file = tmp_path / "cache" / "locks" / f"{cache_key(venv_request)}.build"
    holder = os.open(lock_file, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another build of the same venv holds the lock
    try:
        assert cache.stop is not None
        threading.Timer(0.5, cache.stop.set).start()
        with pytest.raises(Stopped):
            cache.acquire(venv_request, PipVenvBuilder(stop=cache.stop))
    finally:
        os.close(holder)


def test_the_venv_lock_is_released_when_building_the_spec_fails(tmp_path: Path) -> None:
    pool = pool_context(tmp_path, tmp_path / "no-bundled", dynamic=True)
    venv_request = VenvRequest(STUBBORN, "0.0.1")
    key = cache_key(venv_request)
    cache = VenvCache(pool.state_dir / "venvs", 1 << 30)
    built = stubborn_cli_root(pool.state_dir / "venvs" / "store" / f"{key}-prebuilt") / f"{STUBBORN}-bundled"
    (built / META).write_text("{}")
    (cache.root / "venvs" / key).symlink_to(os.path.relpath(built, cache.root / "venvs"))
    assert cache.published(key) is not None
    launcher = SandboxLauncher(pool, f"urn:li:dataHubExecutionRequest:{uuid.uuid4()}")
    outcome = Outcome()
    # a secret that is also a word of the command line: the run refuses the input (nothing runs)
    launcher.start(request("bad", tmp_path / "spawned", version="0.0.1"), {"S": "ingest"}, on_exit=outcome)
    failed = outcome.wait(DEADLINE_S)
    assert isinstance(failed, SandboxResult) and failed.outcome == "error"
    assert failed.error is not None and "command line" in failed.error
    assert not (tmp_path / "spawned").exists()
    use = os.open(cache.root / "locks" / f"{key}.use", os.O_RDWR)
    try:
        fcntl.flock(use, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a use lock leaked
    finally:
        os.close(use)
