"""A run's log: its masked lines in memory (head and tail, for reports), in the task log file,
and to an ``on_line`` callback, written from several threads (the output reader, the
supervisor's notes) under one lock so that the memory and the file hold the same order.

Every piece goes through one ``OrderedHandOff`` (``log_writer``): a flood's reads are counted,
kept and written on a thread of their own, off the output reader's; the result's text and the
file's close wait for the pieces given before them (``SETTLE_S`` at most). A piece goes into
memory first, then into the file: a file that cannot be written (a full disk) stops only the
file, whose failure is logged once at close and said at the end of the result's text."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from executor.sandbox.log_writer import OrderedHandOff
from executor.sandbox.output import TAIL_LINES, BoundedLog, TaskLogFile, count_lines, decode_lines


class RunLog:
    """Where a run's masked output goes; the lines given here are masked already."""

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self._memory = BoundedLog()
        self._file: TaskLogFile | None = None
        self._on_line = on_line
        self._lock = threading.Lock()
        self._pieces = OrderedHandOff(self._keep, "run")
        self.room = self._pieces
        """What the output reader asks for room before a read (``OrderedHandOff.wants_room``)."""
        self._file_error: OSError | None = None

    def open_file(self, path: Path, max_bytes: int) -> None:
        """Also write to the task log file at ``path`` (at most ``max_bytes`` of it)."""
        self._pieces.drain()
        self._pieces.name = path.stem
        with self._lock:
            self._file = TaskLogFile(path, max_bytes)

    def close_file(self) -> None:
        """Close the task log file, with the tail it left out when it was full, once every piece
        given so far is in it (on the hand-off's thread when the disk is slow: ``close``)."""
        self._pieces.close(self._close_file_now)

    def _close_file_now(self) -> None:
        with self._lock:
            log_file, self._file = self._file, None
        if log_file is None:
            return
        try:
            if self._file_error is None:
                log_file.close(self._memory.tail_lines(log_file.lines_left_out))
            else:
                log_file.abandon()
        except OSError as exc:
            self._file_error = self._file_error or exc
        if self._file_error is not None:
            logger.warning("task log {}: writing failed ({}); the file is incomplete", log_file.path.name,
                           self._file_error.strerror or self._file_error)

    def emit(self, line: str) -> None:
        """One line (a note of the sandbox's own)."""
        self._pieces.put((line + "\n").encode("utf-8", "replace"))
        self._call_on_line([line])

    def emit_output(self, lines: bytes) -> None:
        """Whole lines of the recipe's output, as the reader hands them over (bytes, a pipe's
        worth at a time): into memory and the file as they are (``_keep``, on the hand-off's
        thread for a flood's reads); split into lines only for an ``on_line`` callback."""
        self._pieces.put(lines)
        if self._on_line is not None:
            self._call_on_line(decode_lines(lines.split(b"\n")[:-1]))

    def _keep(self, lines: bytes) -> None:
        """Whole lines into memory and the file, in the order given (``OrderedHandOff``)."""
        count = count_lines(lines)  # once for both: past the file's cap it only counts them too
        with self._lock:
            self._memory.add(lines, count)  # first: a file that fails stops only the file
            log_file = self._file if self._file_error is None else None
        if log_file is None:
            return
        try:
            log_file.write(lines, count)  # on this thread only: a stalled disk holds no lock
        except OSError as exc:
            self._file_error = exc  # nothing more goes to the file; said at close and in the text

    def tail(self, max_lines: int = TAIL_LINES) -> str:
        """The last lines kept so far, for progress reports: in a flood, the last reads handed
        over (``MAX_IN_FLIGHT`` at most) may not be in them yet; it never waits for them (a slow
        disk must not hold a progress report)."""
        return self._memory.tail(max_lines)

    def text(self) -> str:
        """The head and tail kept in memory, for the result."""
        self._pieces.drain()
        return self._memory.text() + self._file_note()

    def take_text(self) -> str:
        """``text()`` once the run's output is over, taken out of memory (``BoundedLog.take_text``:
        one copy of the tail on top, not three, and the tail's chunks let go). Copied instead
        while the task log file is cut short: its closing tail comes from memory."""
        self._pieces.drain()
        with self._lock:
            if self._file is not None and self._file.lines_left_out and self._file_error is None:
                return self._memory.text() + self._file_note()
            return self._memory.take_text() + self._file_note()

    def _file_note(self) -> str:
        """The end of the result's text when the task log file could not be written."""
        error = self._file_error
        if error is None:
            return ""
        return f"\n[sandbox] the task log file is incomplete: writing it failed ({error.strerror or error})"

    def _call_on_line(self, lines: list[str]) -> None:
        if self._on_line is None:
            return
        for line in lines:
            try:
                self._on_line(line)
            except Exception:
                logger.exception("on_line callback failed; the run goes on")
