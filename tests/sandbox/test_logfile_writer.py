"""The task log file's writer thread: large writes go to the file beside the reader, in order.

A flood's reads (up to 1 MiB each) are written to the file by a thread of the file's own, so the
kernel's copy into the page cache overlaps the reader's next read; the file must still hold
every line in the order it was handed over, notes included, be complete when ``close`` returns,
and a write the kernel refuses must neither stop the caller nor leave the thread behind.
"""

from __future__ import annotations

import resource
import threading
from pathlib import Path

from executor.sandbox.logfile import WRITER_AT_BYTES, TaskLogFile

LINE = b"x" * 1023 + b"\n"
CHUNK = LINE * (WRITER_AT_BYTES // len(LINE) + 1)


def _writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "sandbox-log"]


def test_large_writes_go_through_the_writer_thread_in_order(tmp_path: Path) -> None:
    path = tmp_path / "task.log"
    log_file = TaskLogFile(path, max_bytes=1 << 30)
    log_file.write_line("first, before any thread")
    assert not _writer_threads()
    log_file.write(CHUNK)
    assert len(_writer_threads()) == 1, "a large write starts the writer"
    log_file.write_line("a note between two reads")
    log_file.write(CHUNK)
    log_file.write(b"last\n")
    log_file.close([])
    assert not _writer_threads(), "close waits for the writer and ends it"
    assert path.read_bytes() == (b"first, before any thread\n" + CHUNK + b"a note between two reads\n"
                                 + CHUNK + b"last\n")


def test_the_cap_and_the_closing_tail_hold_with_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "task.log"
    log_file = TaskLogFile(path, max_bytes=len(CHUNK) + 10)
    log_file.write(CHUNK)
    log_file.write(b"fits\nleft out\n")
    log_file.close(["left out"])
    text = path.read_bytes()
    assert text.startswith(CHUNK + b"fits\n")
    assert text.endswith(b"0 line(s) left out ...]\nleft out\n")


def test_a_write_the_kernel_refuses_is_dropped_and_the_caller_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "task.log"
    log_file = TaskLogFile(path, max_bytes=1 << 30)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = len(CHUNK) + len(CHUNK) // 2  # the second chunk crosses it: EFBIG (SIGXFSZ is ignored)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        for _ in range(4):
            log_file.write(CHUNK)
        log_file.write_line("after the failure")
        log_file.close([])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not _writer_threads()
    assert len(CHUNK) <= path.stat().st_size <= limit
