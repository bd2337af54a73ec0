"""Runs whose limits are all far are looked at by one thread for them all (``far_looks``), and
their limits still hold: a wall-time deadline, a kernel OOM kill in the tree, a stop.

Real recipes in real task cgroups (the hand-over needs the kernel to tell the exit and to list
the tree); skipped where this host gives no writable cgroup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox.cgroups import detect_cgroups
from executor.sandbox.far_looks import FAR_LOOKS
from executor.sandbox.limits import MiB
from executor.sandbox.monitor import HANDED_OVER_WAIT_S, Monitor

from .helpers import marked_processes, py, wait_until
from .test_run_limits import limits

SUPPORT = detect_cgroups()
pytestmark = pytest.mark.skipif(not SUPPORT.active, reason="no writable cgroup here")
SLEEPER = "import time; time.sleep(120)"
HELD_S = 30.0
"""A deadline for the hand-over (the first far look comes 1 s after the start)."""

Start = Callable[..., SandboxRun]


@pytest.fixture
def start(make_spec: Callable[..., SandboxSpec]) -> Iterator[Start]:
    """Start runs (cgroup on); each is stopped and waited for after the test."""
    runs: list[SandboxRun] = []

    def begin(argv: list[str], **overrides: Any) -> SandboxRun:
        run = SandboxRun(make_spec(argv, use_cgroup=True, **overrides))
        runs.append(run)
        run.start()
        return run

    yield begin
    for run in runs:
        run.stop("test teardown", grace_s=0)
        assert run.wait(30) is not None
        assert run.work_dir is None or marked_processes(run.work_dir.name) == []
    wait_until(lambda: FAR_LOOKS.held() == 0, 10, "no run left with the far looks")


def _lookers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sandbox-far-looks"]


def test_sleeping_runs_are_looked_at_by_one_thread_and_a_stop_still_ends_them_at_once(
        start: Start) -> None:
    runs = [start(py(SLEEPER), limits=limits()) for _ in range(3)]
    wait_until(lambda: FAR_LOOKS.held() == 3, HELD_S, "the three sleeping runs to be handed over")
    rounds = FAR_LOOKS.rounds
    wait_until(lambda: FAR_LOOKS.rounds >= rounds + 2, HELD_S, "two rounds of far looks")
    assert len(_lookers()) == 1 and FAR_LOOKS.held() == 3, "one thread looks at them all"
    stopped = time.monotonic()
    runs[0].stop("enough", grace_s=0)
    result = runs[0].wait(60)
    assert result is not None and result.outcome == "stopped"
    assert time.monotonic() - stopped < HELD_S, "the stop woke the run's own thread"
    assert FAR_LOOKS.held() == 2, "the stopped run took itself off the far looks"


def test_a_wall_time_deadline_is_kept_while_the_far_looks_watch(start: Start) -> None:
    run = start(py(SLEEPER), limits=limits(wall_seconds=4.0))
    wait_until(lambda: FAR_LOOKS.held() == 1, HELD_S, "the run to be handed over")
    result = run.wait(60)
    assert result is not None and result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "wall_time" and result.breach.measured >= 4.0
    assert result.duration_s < HANDED_OVER_WAIT_S, "a far look woke the run near its deadline"


OOM_IN_A_CHILD = """
    import os, pathlib, time
    while not pathlib.Path("go").exists():
        time.sleep(0.05)
    if os.fork() == 0:
        hog = []
        while True:
            hog.append(b"x" * (4 << 20))
    os.wait()
    time.sleep(120)
"""


@pytest.mark.skipif(SUPPORT.memory_parent is None, reason="no memory cgroup here")
def test_a_kernel_oom_kill_in_the_tree_is_found_by_a_far_look(start: Start) -> None:
    run = start(py(OOM_IN_A_CHILD), limits=limits(memory_bytes=100 * MiB))
    wait_until(lambda: FAR_LOOKS.held() == 1, HELD_S, "the run to be handed over")
    assert run.work_dir is not None
    (Path(run.work_dir) / "go").touch()  # the child now grows until the kernel kills it
    result = run.wait(90)
    assert result is not None and result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "memory"
    assert result.duration_s < HANDED_OVER_WAIT_S, "a far look found it, not the run's own bound"


def test_a_hung_far_look_holds_up_no_other_runs_wall_deadline(
        start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    """A look of the shared thread that hangs (a stand-in: one run's look blocks until released)
    stops the looks at every other far run; their own threads still keep the wall deadline."""
    release, hung = threading.Event(), threading.Event()
    look = Monitor.far_look
    stuck = start(py(SLEEPER), limits=limits())

    def far_look(monitor: Monitor) -> bool:
        if monitor._work_dir == stuck.work_dir:
            hung.set()
            assert release.wait(120)
        return look(monitor)

    monkeypatch.setattr(Monitor, "far_look", far_look)
    try:
        wait_until(hung.is_set, HELD_S, "the stuck run's far look")
        timed = start(py(SLEEPER), limits=limits(wall_seconds=4.0))
        result = timed.wait(90)
        assert result is not None and result.outcome == "limit" and result.breach is not None
        assert result.breach.limit == "wall_time"
        assert result.duration_s < HANDED_OVER_WAIT_S, "its own thread kept the deadline"
    finally:
        release.set()
