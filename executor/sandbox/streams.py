"""The two pipe threads of a run: one feeds stdin, one reads the merged stdout/stderr.

The reader masks each line before anything else sees it, caps it, and counts bytes for the
output limit; past that limit it only drains the pipe (so the dying tree never blocks on a
full pipe) and keeps nothing. Both threads poll with a short timeout so the run can stop
them even when some escaped process still holds the pipe open.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable
from typing import IO

from loguru import logger

from executor.sandbox.masking import Masker
from executor.sandbox.output import MAX_LINE_CHARS, LineSplitter, cap_line

READ_CHUNK = 65536
POLL_S = 0.2


class _PipeThread:
    """One pipe served on its own daemon thread, stoppable at its next poll."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Begin serving the pipe."""
        self._thread.start()

    def stop(self) -> None:
        """Give up at the next poll even if the pipe is still open (a stuck peer must not hold us)."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError


class OutputReader(_PipeThread):
    """Reads ``stream`` line by line on its own thread, handing masked lines to ``sink``."""

    def __init__(
        self,
        stream: IO[bytes],
        masker: Masker,
        sink: Callable[[str], None],
        output_limit: int | None,
        name: str,
    ) -> None:
        self._fd = stream.fileno()
        self._stream = stream
        self._masker = masker
        self._sink = sink
        self._limit = output_limit
        self._splitter = LineSplitter(MAX_LINE_CHARS * 4 + masker.max_form_length)
        self.bytes_read = 0
        self.over_limit = False
        super().__init__(f"sandbox-out-{name}")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        try:
            while not self._stop.is_set():
                if not poller.poll(POLL_S * 1000):
                    continue
                chunk = os.read(self._fd, READ_CHUNK)
                if not chunk:
                    break
                self._take(chunk)
            for raw, cut in self._splitter.finish():
                self._line(raw, cut)
        except Exception:  # never let a reader death go unnoticed: the run would hang on a full pipe
            logger.exception("sandbox output reader failed")
        finally:
            self._stream.close()

    def _take(self, chunk: bytes) -> None:
        self.bytes_read += len(chunk)
        if self.over_limit:
            return
        if self._limit is not None and self.bytes_read > self._limit:
            self.over_limit = True  # the monitor notices and stops the tree; keep nothing more
            return
        for raw, cut in self._splitter.feed(chunk):
            self._line(raw, cut)

    def _line(self, raw: bytes, cut: bool) -> None:
        text = self._masker.mask(raw.decode("utf-8", errors="replace").rstrip("\r"))
        self._sink(cap_line(text, cut))


class StdinWriter(_PipeThread):
    """Writes the run's stdin (recipe and secrets) on its own thread, then closes it."""

    def __init__(self, stream: IO[bytes], data: bytes, name: str) -> None:
        self._stream = stream
        self._data = data
        super().__init__(f"sandbox-in-{name}")

    def _run(self) -> None:
        fd = self._stream.fileno()
        os.set_blocking(fd, False)
        poller = select.poll()
        poller.register(fd, select.POLLOUT | select.POLLERR)
        view = memoryview(self._data)
        try:
            while view and not self._stop.is_set():
                if not poller.poll(POLL_S * 1000):
                    continue
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    continue
        except OSError:
            pass  # the process exited or closed stdin without reading everything: its business
        finally:
            with contextlib.suppress(OSError):
                self._stream.close()
