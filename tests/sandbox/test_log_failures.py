"""A task log that cannot keep up never holds the run: a file whose writes fail (a full disk)
stops only the file, and a disk that stalls never holds the run's one thread (its stop, its
SIGKILL, its end). Real runs; only the file's writes are replaced (``logfile.write_all``)."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.sandbox import SandboxResult, SandboxRun, SandboxSpec, log_writer, logfile

from .helpers import py, wait_until

DEADLINE_S = 30.0
CHATTY = """
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for n in range(3):
        print("line", n, flush=True)
    while True:
        time.sleep(1)
"""
FLOOD = """
    import os
    block = (b"x" * 1023 + b"\\n") * 1024
    while True:
        os.write(1, block)
"""


@pytest.fixture
def runs() -> Iterator[list[SandboxRun]]:
    started: list[SandboxRun] = []
    yield started
    for sandbox in started:
        sandbox.stop("test teardown", grace_s=0)
        assert sandbox.wait(DEADLINE_S) is not None


def _start(runs: list[SandboxRun], spec: SandboxSpec
           ) -> tuple[SandboxRun, threading.Event, list[SandboxResult]]:
    """Start a run; the event is set when its result is known (as the Task hears of it)."""
    sandbox = SandboxRun(spec)
    runs.append(sandbox)
    known = threading.Event()
    results: list[SandboxResult] = []
    sandbox.when_known(lambda result: (results.append(result), known.set()))
    sandbox.start()
    return sandbox, known, results


def test_a_log_file_that_cannot_be_written_still_ends_the_run_with_its_output(
        make_spec: Callable[..., SandboxSpec], tmp_path: Path, runs: list[SandboxRun],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write to the file fails with ENOSPC: the output is still in the result's text (with
    a line saying the file is incomplete), the SIGKILL after the grace is still sent (its note
    goes to the same log), and the result reaches its callback."""

    def full_disk(_fd: int, _data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(logfile, "write_all", full_disk)
    log_path = tmp_path / "logs" / "full.log"
    sandbox, known, results = _start(runs, make_spec(py(CHATTY), log_file=log_path))
    wait_until(lambda: "line 2" in sandbox.log_tail(), DEADLINE_S, "the recipe's output")
    sandbox.stop("test stop", grace_s=0.2)  # SIGTERM is ignored: the grace's end SIGKILLs
    assert known.wait(DEADLINE_S), "the run's result never became known"
    text = results[0].log_text
    assert "line 0\nline 1\nline 2" in text
    assert "the task log file is incomplete" in text
    assert "grace period over: SIGKILL" in text
    assert log_path.read_bytes() == b""


def test_a_stalled_log_disk_does_not_delay_a_stop(
        make_spec: Callable[..., SandboxSpec], tmp_path: Path, runs: list[SandboxRun],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's writes block (a stalled disk) under a flood: the hand-off fills, the run's
    thread stops reading the pipe instead of waiting on it, and a stop still kills the tree and
    ends the run (the result goes without what the disk still holds)."""
    release = threading.Event()
    real_write_all = logfile.write_all

    def stalled(fd: int, data: bytes) -> None:
        release.wait(DEADLINE_S * 4)
        real_write_all(fd, data)

    monkeypatch.setattr(logfile, "write_all", stalled)
    monkeypatch.setattr(log_writer, "SETTLE_S", 0.2)
    try:
        spec = make_spec(py(FLOOD), log_file=tmp_path / "logs" / "stalled.log")
        sandbox, known, _ = _start(runs, spec)
        wait_until(lambda: sandbox.output_bytes >= log_writer.MAX_IN_FLIGHT, DEADLINE_S,
                   "the flood to fill the hand-off")
        sandbox.stop("test stop", grace_s=0)
        assert known.wait(DEADLINE_S), "the stop waited for the stalled disk"
        assert not release.is_set()
    finally:
        release.set()
    assert sandbox.wait(DEADLINE_S) is not None
