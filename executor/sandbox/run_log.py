"""A run's log: its masked lines in memory (head and tail, for reports), in the task log file,
and to an ``on_line`` callback, written from several threads (the output reader, the
supervisor's notes) under one lock so that the memory and the file hold the same order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from executor.sandbox.output import TAIL_LINES, BoundedLog, TaskLogFile, count_lines, decode_lines


class RunLog:
    """Where a run's masked output goes; the lines given here are masked already."""

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self._memory = BoundedLog()
        self._file: TaskLogFile | None = None
        self._on_line = on_line
        self._lock = threading.Lock()

    def open_file(self, path: Path, max_bytes: int) -> None:
        """Also write to the task log file at ``path`` (at most ``max_bytes`` of it)."""
        with self._lock:
            self._file = TaskLogFile(path, max_bytes)

    def close_file(self) -> None:
        """Close the task log file, with the tail it left out when it was full."""
        with self._lock:
            if self._file is not None:
                self._file.close(self._memory.tail_lines(self._file.lines_left_out))
                self._file = None

    def emit(self, line: str) -> None:
        """One line (a note of the sandbox's own)."""
        with self._lock:
            self._memory.append(line)
            if self._file is not None:
                self._file.write_line(line)
        self._call_on_line([line])

    def emit_output(self, lines: bytes) -> None:
        """Whole lines of the recipe's output, as the reader hands them over (bytes, a pipe's
        worth at a time): into memory and the file as they are; split into lines only for an
        ``on_line`` callback."""
        count = count_lines(lines)  # once for both: past the file's cap it only counts them too
        with self._lock:
            self._memory.add(lines, count)
            if self._file is not None:
                self._file.write(lines, count)
        if self._on_line is not None:
            self._call_on_line(decode_lines(lines.split(b"\n")[:-1]))

    def tail(self, max_lines: int = TAIL_LINES) -> str:
        return self._memory.tail(max_lines)

    def text(self) -> str:
        """The head and tail kept in memory, for the result."""
        return self._memory.text()

    def take_text(self) -> str:
        """``text()`` once the run's output is over, taken out of memory (``BoundedLog.take_text``:
        one copy of the tail on top, not three, and the tail's chunks let go). Copied instead
        while the task log file is cut short: its closing tail comes from memory."""
        with self._lock:
            if self._file is not None and self._file.lines_left_out:
                return self._memory.text()
            return self._memory.take_text()

    def _call_on_line(self, lines: list[str]) -> None:
        if self._on_line is None:
            return
        for line in lines:
            try:
                self._on_line(line)
            except Exception:
                logger.exception("on_line callback failed; the run goes on")
