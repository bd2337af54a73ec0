"""The run log's hand-off: pieces leave the caller's thread, in order, and end by close; a
failing or stalled apply never raises to its callers nor holds them past their deadline."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.sandbox import logfile, run_log
from executor.sandbox.log_writer import MAX_IN_FLIGHT, OrderedHandOff, write_all
from executor.sandbox.logfile import TaskLogFile
from executor.sandbox.run_log import RunLog

from .helpers import wait_until

DEADLINE_S = 10.0
PIECE = 128 << 10


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
    pieces = [b"a" * PIECE, b"small\n", b"b" * (MAX_IN_FLIGHT - PIECE - 6)]
    returned = _in_thread(lambda: [writer.put(piece) for piece in pieces])
    assert returned.wait(DEADLINE_S), "the caller waited for a pipe nobody reads"
    expected = b"".join(pieces)
    assert _read_all(read_end, len(expected)) == expected
    closed = _in_thread(writer.close)
    assert closed.wait(DEADLINE_S)


def test_small_writes_are_written_by_the_drain(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = _writer(fd, "small")
        writer.put(b"line\n")
        assert writer.drain(DEADLINE_S)
        assert (tmp_path / "log").read_bytes() == b"line\n"
        assert writer.close(timeout_s=DEADLINE_S)
    finally:
        os.close(fd)


def test_a_failed_write_is_never_raised_and_every_piece_is_counted(pipe: tuple[int, int]) -> None:
    """A write that fails (EPIPE here) is logged, never raised to a later ``put``, and its piece
    counts as applied: ``drain`` and ``close`` return at once, the room comes back."""
    read_end, write_end = pipe
    os.close(read_end)  # nobody will read: the thread's writes fail (EPIPE)
    writer = _writer(write_end, "broken")
    done = _in_thread(lambda: [writer.put(b"y" * PIECE) for _ in range(4 * MAX_IN_FLIGHT // PIECE)])
    assert done.wait(DEADLINE_S)
    assert writer.drain(DEADLINE_S)
    assert not writer.wants_room()
    assert writer.close(timeout_s=DEADLINE_S)


def _stuck_writer(release: threading.Event, applied: list[int]) -> OrderedHandOff:
    """A hand-off whose every apply waits for ``release`` (a stalled disk)."""

    def stuck(data: bytes) -> None:
        release.wait(DEADLINE_S * 6)
        applied.append(len(data))

    return OrderedHandOff(stuck, "stalled")


def test_a_stalled_apply_never_blocks_put_and_signals_room_when_it_comes_back() -> None:
    """``put`` returns at once while the thread is stuck; ``wants_room`` says when
    ``MAX_IN_FLIGHT`` waits, ``drain`` gives up at its deadline, and ``room_fd`` is signalled
    once room came back."""
    release = threading.Event()
    applied: list[int] = []
    writer = _stuck_writer(release, applied)
    pieces = 2 * MAX_IN_FLIGHT // PIECE
    assert _in_thread(lambda: [writer.put(b"z" * PIECE) for _ in range(pieces)]).wait(DEADLINE_S)
    assert writer.wants_room()
    room = select.poll()
    room.register(writer.room_fd, select.POLLIN)
    assert not writer.drain(0.05)
    assert not room.poll(0)
    release.set()
    assert room.poll(int(DEADLINE_S * 1000)), "the room was never signalled"
    wait_until(lambda: writer.drain(0), DEADLINE_S, "the stalled pieces to be applied")
    assert len(applied) == pieces and not writer.wants_room()
    assert writer.close(timeout_s=DEADLINE_S)


def test_a_close_that_gives_up_leaves_its_action_to_the_thread() -> None:
    release = threading.Event()
    applied: list[int] = []
    writer = _stuck_writer(release, applied)
    writer.put(b"last\n")
    closed = threading.Event()
    assert not writer.close(closed.set, timeout_s=0.05)
    assert not closed.is_set()
    assert not writer.drain(DEADLINE_S), "a wait after one that gave up waits again"
    release.set()
    assert closed.wait(DEADLINE_S), "the close's action never ran on the thread"
    assert applied == [5]


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
