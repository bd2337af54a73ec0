"""A stop that comes after the recipe has exited does not make its run "stopped": the monitor
looks whether the main process is still there when the stop's signal would go. A recipe that
finished its work in the race with a stop (a pool stopping, a runner's Task ending) is
reported as what it was, not as an interruption that another executor would run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from executor.sandbox.limits import SandboxLimits
from executor.sandbox.masking import Masker
from executor.sandbox.monitor import Monitor, StopRequest
from executor.sandbox.streams import OutputReader, StdinWriter

from .helpers import wait_until

ENDED = StopRequest("the task ended", 0.0, "FAILURE")


class Hooks:
    """The run's side of the monitor: one pending stop, and the notes it writes."""

    def __init__(self, stop: StopRequest | None) -> None:
        self.stop = stop
        self.notes: list[str] = []

    def take_stop_request(self) -> StopRequest | None:
        stop, self.stop = self.stop, None
        return stop

    def note(self, text: str) -> None:
        self.notes.append(text)


def watch(code: str, stop: StopRequest, tmp_path: Path, *, exited: bool) -> Monitor:
    """Run ``code``; once it has exited (a zombie nobody has looked at yet) or while it runs,
    hand the monitor a pending stop and let it watch the process to its end."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        if exited:
            wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 30, "the exit")
        assert proc.stdin is not None and proc.stdout is not None
        reader = OutputReader(proc.stdout, Masker([]), lambda _lines: None, None, "stop-race")
        writer = StdinWriter(proc.stdin, b"", "stop-race")
        limits = SandboxLimits(kill_grace_s=5.0, sample_interval_s=0.05)
        monitor = Monitor(Hooks(stop), proc, reader, writer, None, tmp_path, limits)
        monitor.run()
        return monitor
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def test_a_stop_after_the_exit_leaves_the_run_ended_on_its_own(tmp_path: Path) -> None:
    monitor = watch("import sys; sys.exit(0)", ENDED, tmp_path, exited=True)
    result = monitor.result(0.1, "", None, None)
    assert result.outcome == "exited" and result.exit_code == 0 and result.signal is None
    assert result.stop_reason is None and result.stop_status is None
    assert result.suggested_status == "SUCCESS"


def test_a_stop_while_it_runs_stops_it(tmp_path: Path) -> None:
    monitor = watch("import time; time.sleep(60)", ENDED, tmp_path, exited=False)
    result = monitor.result(0.1, "", None, None)
    assert result.outcome == "stopped" and result.signal == signal.SIGKILL
    assert result.stop_reason == "the task ended" and result.stop_status == "FAILURE"


@pytest.mark.parametrize(("first", "later", "kept"), [
    (None, 5.0, 5.0),  # the limits' grace gives way to a grace given
    (5.0, None, 5.0),
    (5.0, 0.0, 0.0),   # a later SIGKILL-now is not weakened by the first stop's grace
    (0.0, 5.0, 0.0),
    (None, None, None),
])
def test_a_later_stop_never_weakens_an_earlier_one(first: float | None, later: float | None,
                                                   kept: float | None) -> None:
    merged = StopRequest("first", first, "CANCELLED").then(later)
    assert merged == StopRequest("first", kept, "CANCELLED")
