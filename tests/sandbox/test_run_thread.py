"""One thread per run (issue 12): the run's own thread reads the output in the monitor's waits,
beside the process's exit and the stop, so a run starts no reader thread. A flood does not hold
a due sample back, output past its limit ends the wait at once, a reader handed over from
another thread (a held run's input given) is read by the waiting thread without ending its
sleep, and the end of the run reads the pipe to its end or gives up on one something else holds.

Real processes and pipes throughout.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable

import pytest

from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec
from executor.sandbox.limits import MiB
from executor.sandbox.masking import Masker
from executor.sandbox.streams import OutputReader
from executor.sandbox.waiter import ExitWaiter
from executor.supervision import spare_threads

from .conftest import RunFactory
from .helpers import py, wait_until

LONG_S = 60.0
FLOOD = """
    import os, sys
    block = b"x" * 1023 + b"\\n"
    block *= 1024
    sys.stdin.read()
    while True:
        os.write(1, block)
"""


def _spawn(children: list[subprocess.Popen[bytes]], code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True)
    children.append(proc)
    return proc


def _reader(proc: subprocess.Popen[bytes], sink: Callable[[bytes], None], limit: int | None = None
            ) -> OutputReader:
    assert proc.stdout is not None
    return OutputReader(proc.stdout, Masker([]), sink, limit, "run-thread")


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _go(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()  # the child's read of its stdin returns: it starts


def test_a_run_reads_its_output_without_a_thread_of_its_own(run_sandbox: RunFactory,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    kinds: list[str | None] = []
    start = spare_threads.SPARES.start

    def counted(target: Callable[[], object], name: str, comm: str | None = None) -> spare_threads.Job:
        kinds.append(comm)
        return start(target, name, comm)

    monkeypatch.setattr(spare_threads.SPARES, "start", counted)
    code = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.01)"
    _, result = run_sandbox(py(code))
    assert result.outcome == "exited" and result.exit_code == 0
    assert [f"line {i}" in result.log_text for i in range(3)] == [True] * 3
    assert kinds[0] == "sandbox" and "sandbox-out" not in kinds, "the supervisor reads the pipe too"
    assert set(kinds) <= {"sandbox", "sandbox-log"}, "the log's pieces alone go to a thread of their own"


def test_a_flood_does_not_hold_the_wait_past_its_timeout(children: list[subprocess.Popen[bytes]]) -> None:
    proc = _spawn(children, FLOOD)
    reader = _reader(proc, lambda _lines: None)
    waiter = ExitWaiter(proc.pid)
    try:
        waiter.read_output(reader)
        _go(proc)
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], LONG_S)[0], "the flood began"
        thread = _in_thread(lambda: waiter.wait(0.05))
        thread.join(LONG_S)
        assert not thread.is_alive(), "an endless flood kept the wait from returning when due"
        assert reader.bytes_read > 0, "the wait read the output while it lasted"
    finally:
        waiter.close()
        os.killpg(proc.pid, signal.SIGKILL)
        reader.drain(LONG_S)


def test_output_past_its_limit_ends_the_wait_at_once(children: list[subprocess.Popen[bytes]]) -> None:
    proc = _spawn(children, """
        import sys, time
        sys.stdin.read()
        print("y" * 10000, flush=True)
        time.sleep(60)
    """)
    reader = _reader(proc, lambda _lines: None, limit=1000)
    waiter = ExitWaiter(proc.pid)
    thread = _in_thread(lambda: waiter.wait(10 * LONG_S))
    try:
        waiter.read_output(reader)
        _go(proc)
        thread.join(LONG_S)
        assert not thread.is_alive(), "the output limit was passed: the monitor must look now"
        assert reader.over_limit and not waiter.exited
    finally:
        waiter.wake()
        thread.join(LONG_S)
        waiter.close()
        os.killpg(proc.pid, signal.SIGKILL)
        reader.drain(LONG_S)


def test_a_reader_handed_over_is_read_by_the_waiting_thread_which_sleeps_on(
        children: list[subprocess.Popen[bytes]]) -> None:
    proc = _spawn(children, """
        import sys, time
        sys.stdin.read()
        print("hello from the recipe", flush=True)
        time.sleep(60)
    """)
    lines: list[bytes] = []
    sink_threads: list[int] = []

    def sink(chunk: bytes) -> None:
        lines.append(chunk)
        sink_threads.append(threading.get_ident())

    reader = _reader(proc, sink)
    waiter = ExitWaiter(proc.pid)
    thread = _in_thread(lambda: waiter.wait(10 * LONG_S))
    try:
        waiter.read_output(reader)  # from this thread, while the other one sleeps
        _go(proc)
        wait_until(lambda: b"hello from the recipe\n" in b"".join(lines), LONG_S, "the line")
        assert sink_threads == [thread.ident], "read on the waiting thread"
        assert thread.is_alive(), "handing a reader over is no wake: the sleep goes on"
    finally:
        waiter.wake()
        thread.join(LONG_S)
        waiter.close()
        os.killpg(proc.pid, signal.SIGKILL)
        reader.drain(LONG_S)
    assert not thread.is_alive()


def test_the_end_gives_up_on_a_pipe_something_else_holds_and_keeps_its_last_partial_line() -> None:
    read_end, write_end = os.pipe()
    lines: list[bytes] = []
    reader = OutputReader(os.fdopen(read_end, "rb", buffering=0), Masker([]), lines.append, None, "held")
    try:
        os.write(write_end, b"first\npartial")
        assert not reader.drain(0.05), "the writer still holds the pipe: no end, the read gives up"
        assert b"".join(lines) == b"first\npartial\n" and reader.ended
        assert not reader.read_once(), "given up: nothing more is read"
    finally:
        os.close(write_end)


def test_the_end_gives_up_at_its_deadline_on_a_pipe_that_always_has_more() -> None:
    """A pipe that is never empty (here each read's lines put more into it, as a process that
    left the tree and floods it would): the deadline is looked at before every read, not only
    after an empty one."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    stop = threading.Event()

    def refill(_lines: bytes) -> None:
        if not stop.is_set():
            os.write(write_end, b"more\n" * 100)

    reader = OutputReader(os.fdopen(read_end, "rb", buffering=0), Masker([]), refill, None, "endless")
    os.write(write_end, b"first\n")
    ended = threading.Event()
    answers: list[bool] = []

    def drain() -> None:
        answers.append(reader.drain(0.2))
        ended.set()

    _in_thread(drain)
    try:
        assert ended.wait(LONG_S / 3), "the end kept reading past its deadline"
        assert answers == [False] and reader.ended
    finally:
        stop.set()
        assert ended.wait(LONG_S)
        os.close(write_end)


def test_the_end_reads_the_pipe_to_its_end() -> None:
    read_end, write_end = os.pipe()
    lines: list[bytes] = []
    reader = OutputReader(os.fdopen(read_end, "rb", buffering=0), Masker([]), lines.append, None, "ended")
    os.write(write_end, b"all of it\n")
    os.close(write_end)
    assert reader.drain(LONG_S)
    assert b"".join(lines) == b"all of it\n" and reader.bytes_read == 10


def test_a_stop_during_an_endless_flood_ends_the_run(make_spec: Callable[..., SandboxSpec]) -> None:
    """The run's one thread reads a flood and still sees the stop's eventfd: the tree is killed
    and the run ends with the output read so far, within the deadline."""
    code = "import os\nblock = b'z' * 1023 + b'\\n'\nwhile True:\n    os.write(1, block * 1024)"
    run = SandboxRun(make_spec(py(code), limits=SandboxLimits(kill_grace_s=LONG_S, sample_interval_s=0.05)))
    run.start()
    wait_until(lambda: run.output_bytes > 4 * MiB, LONG_S, "the flood")
    run.stop("cancelled by the user", grace_s=0)
    result = run.wait(LONG_S)
    assert result is not None, "the flood kept the run from seeing its stop"
    assert result.outcome == "stopped" and result.signal == signal.SIGKILL
    assert result.output_bytes >= 4 * MiB
