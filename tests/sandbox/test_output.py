"""Output handling: capped lines, head + tail buffer, the capped task log file and its retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

from executor.sandbox import prune_task_logs
from executor.sandbox.output import BoundedLog, LineCutter, TaskLogFile, cap_line


def test_cutter_keeps_at_most_its_cap_of_a_huge_line() -> None:
    cutter = LineCutter(max_bytes=10)
    out = cutter.feed(b"short\n" + b"x" * 1000)
    out += cutter.feed(b"y" * 1000 + b"\nmiddle\n" + b"z" * 30 + b"\nlast")
    out += cutter.finish()
    assert out.split(b"\n") == [b"short", b"x" * 10 + b" [...truncated]", b"middle",
                                 b"z" * 10 + b" [...truncated]", b"last", b""]


def test_cap_line_marks_truncation() -> None:
    assert cap_line("abcdef", False, max_chars=4) == "abcd [...truncated]"
    assert cap_line("abc", True, max_chars=4) == "abc [...truncated]"
    assert cap_line("abc", False, max_chars=4) == "abc"


def test_bounded_log_keeps_head_and_tail_with_a_marker() -> None:
    log = BoundedLog(head_lines=2, tail_lines=3)
    for i in range(10):
        log.append(f"line {i}")
    assert log.text().splitlines() == ["line 0", "line 1", "[... 5 line(s) truncated ...]",
                                       "line 7", "line 8", "line 9"]
    assert log.tail(2).splitlines() == ["[... 8 line(s) truncated ...]", "line 8", "line 9"]
    assert log.total_lines == 10


def test_bounded_log_tail_includes_head_while_nothing_was_dropped() -> None:
    log = BoundedLog(head_lines=2, tail_lines=3)
    for i in range(4):
        log.append(f"line {i}")
    assert log.tail(10).splitlines() == ["line 0", "line 1", "line 2", "line 3"]


def test_task_log_file_is_private_capped_and_ends_with_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "task.log"
    log_file = TaskLogFile(path, max_bytes=30)
    lines = [f"line {i:02d}" for i in range(10)]
    for line in lines:
        log_file.write_line(line)
    log_file.close(lines[-3:])
    content = path.read_text().splitlines()
    assert content[:3] == ["line 00", "line 01", "line 02"]
    assert "capped at 30 bytes" in content[3]
    assert content[-3:] == ["line 07", "line 08", "line 09"]
    assert (os.stat(path).st_mode & 0o777) == 0o600


def test_prune_keeps_newest_files_and_drops_old_ones(tmp_path: Path) -> None:
    now = time.time()
    for i in range(5):
        path = tmp_path / f"task-{i}.log"
        path.write_text("x")
        os.utime(path, (now - i * 3600, now - i * 3600))
    ancient = tmp_path / "ancient.log"
    ancient.write_text("x")
    os.utime(ancient, (now - 30 * 86400, now - 30 * 86400))
    (tmp_path / "keep.txt").write_text("not a log")
    assert prune_task_logs(tmp_path, keep_files=3, keep_days=7) == 3
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == ["keep.txt", "task-0.log", "task-1.log", "task-2.log"]
    assert prune_task_logs(tmp_path / "missing", keep_files=1, keep_days=None) == 0
