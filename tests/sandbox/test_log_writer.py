"""The run log's hand-off: large pieces leave the caller's thread, in order, and end by close."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.sandbox import logfile, run_log
from executor.sandbox.log_writer import HANDOFF_BYTES, MAX_IN_FLIGHT, OrderedHandOff, write_all
from executor.sandbox.logfile import TaskLogFile
from executor.sandbox.run_log import RunLog

DEADLINE_S = 10.0


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):  # closed by the test
            os.close(fd)


def _in_thread(action: object) -> threading.Event:
    """Run ``action`` on a thread of its own; the event is set once it has returned."""
    done = threading.Event()

    def run() -> None:
        action()  # type: ignore[operator]
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


def _writer(fd: int, name: str) -> OrderedHandOff:
    """A hand-off that writes its pieces to ``fd``."""
    return OrderedHandOff(functools.partial(write_all, fd), name)


def _read_all(fd: int, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = os.read(fd, size - len(got))
        assert chunk, "the pipe ended early"
        got += chunk
    return bytes(got)


def test_large_writes_do_not_wait_for_the_kernel_and_keep_their_order(pipe: tuple[int, int]) -> None:
    """Pieces far larger than the pipe return at once (a thread writes them), small ones queue
    behind them, and everything comes out in the order given by the end of ``close``."""
    read_end, write_end = pipe
    writer = _writer(write_end, "order")
    pieces = [b"a" * HANDOFF_BYTES, b"small\n", b"b" * (MAX_IN_FLIGHT - HANDOFF_BYTES - 6)]
    returned = _in_thread(lambda: [writer.put(piece) for piece in pieces])
    assert returned.wait(DEADLINE_S), "the caller waited for a pipe nobody reads"
    expected = b"".join(pieces)
    assert _read_all(read_end, len(expected)) == expected
    closed = _in_thread(writer.close)
    assert closed.wait(DEADLINE_S)


def test_small_writes_with_nothing_in_flight_are_written_at_once(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = _writer(fd, "small")
        writer.put(b"line\n")
        assert (tmp_path / "log").read_bytes() == b"line\n"
        writer.close()
    finally:
        os.close(fd)


def test_a_failed_write_is_raised_at_the_next_one_and_close_does_not_raise(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.close(read_end)  # nobody will read: the thread's write fails (EPIPE)
    writer = _writer(write_end, "broken")
    writer.put(b"x" * HANDOFF_BYTES)
    raised: list[BaseException] = []

    def keep_writing() -> None:
        try:
            for _ in range(4 * MAX_IN_FLIGHT // HANDOFF_BYTES):
                writer.put(b"y" * HANDOFF_BYTES)
        except OSError as exc:
            raised.append(exc)

    assert _in_thread(keep_writing).wait(DEADLINE_S)
    assert raised and isinstance(raised[0], BrokenPipeError)
    assert _in_thread(writer.close).wait(DEADLINE_S)


def test_task_log_file_is_complete_and_capped_after_close_of_large_writes(tmp_path: Path) -> None:
    """The file's cap is applied on whole lines of large writes."""
    line = b"z" * 1023 + b"\n"
    chunk = line * 1024  # a pipe's worth of 1 KiB lines: handed over
    log_file = TaskLogFile(tmp_path / "task.log", max_bytes=3 * len(chunk) + 10)
    for _ in range(5):
        log_file.write(chunk, 1024)
    assert log_file.lines_left_out == 2 * 1024
    log_file.close(["last"])
    content = (tmp_path / "task.log").read_bytes()
    assert content.startswith(chunk * 3)
    assert content[3 * len(chunk):].startswith(b"[... log file capped at")
    assert content.endswith(b"\nlast\n")


def test_a_floods_reads_are_counted_and_kept_off_the_readers_thread_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run log's pieces: a flood's reads are counted, kept in memory and written by the
    hand-off's thread; a note given between them stays between them in memory and in the file,
    and the result's text sees every piece given before it."""
    counted_on: list[threading.Thread] = []

    def count(data: bytes, start: int = 0) -> int:
        counted_on.append(threading.current_thread())
        return logfile.count_lines(data, start)

    monkeypatch.setattr(run_log, "count_lines", count)
    log = RunLog()
    log.open_file(tmp_path / "task.log", 1 << 30)
    read = b"".join(b"line %07d\n" % n for n in range(20_000))  # 240 KiB: handed over
    log.emit_output(read)
    log.emit("a note of the sandbox's own")
    log.emit_output(b"after the note\n")
    text = log.take_text()
    assert counted_on and counted_on[0] is not threading.current_thread()
    log.close_file()
    assert text.endswith("line 0019999\na note of the sandbox's own\nafter the note")
    assert (tmp_path / "task.log").read_bytes() == read + b"a note of the sandbox's own\nafter the note\n"
