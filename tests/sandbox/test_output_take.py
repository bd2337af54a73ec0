"""The log text taken at a run's end (``BoundedLog.take_text``): the same text as ``text()``,
built with one copy of the kept lines, the tail's chunks let go as they are copied."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sandbox.output import MAX_LINE_CHARS, BoundedLog
from executor.sandbox.run_log import RunLog

PIECES = [b"a", b"word ", "é".encode(), b"\r", b"\xe2\x82", b"\xff", b"\x0b", b"x" * 300]
LINE = st.lists(st.sampled_from(PIECES), max_size=8).map(b"".join) | st.integers(
    MAX_LINE_CHARS - 2, 3 * MAX_LINE_CHARS).map(lambda n: b"y" * n)
CHUNK = st.lists(LINE, min_size=1, max_size=6).map(lambda lines: b"".join(line + b"\n" for line in lines))


def _log(head: int, tail: int, chunks: list[bytes], notes: list[int]) -> BoundedLog:
    log = BoundedLog(head_lines=head, tail_lines=tail)
    for i, chunk in enumerate(chunks):
        log.add(chunk)
        if i in notes:
            log.append(f"note {i} é")
    return log


@given(st.integers(0, 4), st.integers(0, 9), st.lists(CHUNK, max_size=12), st.lists(st.integers(0, 11)))
@settings(max_examples=300, deadline=None)
def test_taken_text_is_the_text_byte_for_byte(
        head: int, tail: int, chunks: list[bytes], notes: list[int]) -> None:
    """Head, marker, CR, invalid UTF-8, lines over the cap, empty lines: as ``text()`` shows them."""
    assert _log(head, tail, chunks, notes).take_text() == _log(head, tail, chunks, notes).text()


def test_a_taken_log_keeps_only_the_lines_added_after() -> None:
    log = BoundedLog(head_lines=2, tail_lines=3)
    for i in range(10):
        log.append(f"line {i}")
    assert log.take_text().splitlines() == ["line 0", "line 1", "[... 5 line(s) truncated ...]",
                                            "line 7", "line 8", "line 9"]
    log.append("summary")
    assert log.tail_lines(5) == ["summary"]
    assert log.total_lines == 11
    assert log.text().splitlines() == ["[... 10 line(s) truncated ...]", "summary"]


def test_taking_the_text_of_a_flood_lets_its_chunks_go() -> None:
    """After 8 reads of 1,024 lines of 1 KiB: the text is 2.2 MB; ``text()`` holds the chunks,
    their pieces and the text at once (two copies on top), taking it one copy at most."""
    tracemalloc.start()
    try:
        log = BoundedLog()
        for n in range(8):
            log.add(b"".join(b"%06d %s\n" % (n * 1024 + i, b"x" * 1017) for i in range(1024)))
        copied = log.text()
        size = len(copied)
        del copied
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        text = log.take_text()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(text) == size > 2_000_000
    assert peak - before < 1.2 * size  # the buffer and the text, less the chunks freed meanwhile
    assert after - before < 0.1 * size  # the chunks went, the text came: about as much


def test_run_log_copies_the_text_while_the_file_needs_its_closing_tail(tmp_path: Path) -> None:
    run_log = RunLog()
    run_log.open_file(tmp_path / "task.log", max_bytes=12)
    run_log.emit_output(b"aaaa\nbbbb\ncccc\ndddd\n")  # the file holds two lines, leaves two out
    assert run_log.take_text() == "aaaa\nbbbb\ncccc\ndddd"
    run_log.emit("summary")
    run_log.close_file()
    assert (tmp_path / "task.log").read_text().splitlines() == [
        "aaaa", "bbbb", "[... log file capped at 12 bytes; 0 line(s) left out ...]",
        "cccc", "dddd", "summary"]


def test_run_log_taken_text_leaves_the_summary_for_a_file_filled_by_it(tmp_path: Path) -> None:
    run_log = RunLog()
    run_log.open_file(tmp_path / "task.log", max_bytes=10)
    run_log.emit_output(b"aaaa\nbbbb\n")  # fits exactly: nothing left out yet
    assert run_log.take_text() == "aaaa\nbbbb"
    run_log.emit("summary")  # no room: the closing tail shows it, from memory
    run_log.close_file()
    assert (tmp_path / "task.log").read_text().splitlines() == [
        "aaaa", "bbbb", "[... log file capped at 10 bytes; 0 line(s) left out ...]", "summary"]
