"""The two pipe threads of a run: one feeds stdin, one reads the merged stdout/stderr.

The reader works on chunks, never on single lines: it enlarges the pipe (``F_SETPIPE_SZ``, up
to 1 MiB), reads as much as is there in one call into a reused buffer, masks the chunk on
bytes (``StreamMasker``, which holds back the few bytes a secret split across two reads may
still need), replaces invalid UTF-8 (only in chunks that are not pure ASCII), and hands whole
lines on (``LineCutter``). It counts bytes for the output limit; past that limit it only drains the
pipe (so the dying tree never blocks on a full pipe) and keeps nothing. Both threads wait in
``poll`` on their pipe and on an eventfd that ``stop`` signals, so the run can stop them even
when some escaped process still holds the pipe open, and a quiet recipe costs no wake-ups (a
thread that polled on a timeout woke 5 times a second per running task).
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import functools
import os
import select
import threading
from collections.abc import Callable
from typing import IO

from loguru import logger

from executor.sandbox.masking import Masker
from executor.sandbox.output import LineCutter
from executor.supervision.spare_threads import SPARES, Job

READ_CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
"""A pipe of 1 MiB instead of 64 KiB: the writer blocks 16x less often, and each wake-up of
the reader (and each time it takes the GIL back) moves up to 16x more bytes."""
POLL_S = 0.2
"""The poll timeout where no eventfd could be made (the stop is then seen at the next timeout)."""
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PIPE_MAX = "/proc/sys/fs/pipe-max-size"


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> int:
    """Ask for a ``size``-byte pipe buffer (capped by the system's maximum); the size obtained.

    Best effort: without privilege the kernel may refuse (per-user pipe quota), and then the
    pipe keeps its size.
    """
    try:
        return fcntl.fcntl(fd, _F_SETPIPE_SZ, min(size, _pipe_max()))
    except OSError:
        return 0


@functools.cache
def _pipe_max() -> int:
    """The largest pipe an unprivileged process may ask for (1 MiB by default)."""
    with contextlib.suppress(OSError, ValueError), open(_PIPE_MAX) as limit:
        return int(limit.read())
    return PIPE_SIZE


class _PipeThread:
    """One pipe served on a thread of its own (a spare one, ``spare_threads``), stoppable at
    once (its poll also waits on an eventfd that ``stop`` signals)."""

    def __init__(self, name: str, comm: str) -> None:
        self._stop = threading.Event()
        self._name = name
        self._comm = comm
        """The kernel's name for the thread (``top -H``), the same for every run."""
        self._thread: Job | None = None
        """Its work on a spare thread (``spare_threads``) once started."""
        self._wake_lock = threading.Lock()
        self._wake_fd: int | None = None
        self._poll_ms = int(POLL_S * 1000)
        """How long one ``poll`` may block: for ever once ``stop`` can wake it."""

    def start(self) -> None:
        """Begin serving the pipe (the eventfd is made here: a thread never started holds none)."""
        with contextlib.suppress(OSError, AttributeError):
            self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._poll_ms = -1
        self._thread = SPARES.start(self._run, self._name, self._comm)

    def stop(self) -> None:
        """Give up now even if the pipe is still open (a stuck peer must not hold us)."""
        self._stop.set()
        with self._wake_lock:
            if self._wake_fd is not None:
                with contextlib.suppress(OSError):
                    os.eventfd_write(self._wake_fd, 1)

    def _poller(self, fd: int, events: int) -> select.poll:
        """A poll object on the pipe ``fd`` and on the stop eventfd."""
        poller = select.poll()
        poller.register(fd, events)
        if self._wake_fd is not None:
            poller.register(self._wake_fd, select.POLLIN)
        return poller

    def _close_wake(self) -> None:
        """At the thread's end: the eventfd goes (a later ``stop`` finds it gone)."""
        with self._wake_lock:
            if self._wake_fd is not None:
                os.close(self._wake_fd)
                self._wake_fd = None

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it has finished (or was never needed)."""
        if self._thread is None:
            return True
        return self._thread.join(timeout)

    @property
    def started(self) -> bool:
        """Whether the pipe got a thread (a stdin the pipe took at once needs none)."""
        return self._thread is not None

    def _run(self) -> None:
        raise NotImplementedError


class OutputReader(_PipeThread):
    """Reads ``stream`` by chunks on its own thread, handing masked whole lines to ``sink``."""

    def __init__(
        self,
        stream: IO[bytes],
        masker: Masker,
        sink: Callable[[bytes], None],
        output_limit: int | None,
        name: str,
    ) -> None:
        self._fd = stream.fileno()
        self._stream = stream
        self._masker = masker.stream()
        self._sink = sink
        self._limit = output_limit
        self._cutter = LineCutter()
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._utf8_pending = False
        self.bytes_read = 0
        self.over_limit = False
        super().__init__(f"sandbox-out-{name}", "sandbox-out")

    def _run(self) -> None:
        try:
            os.set_blocking(self._fd, False)
            grow_pipe(self._fd)
            poller = self._poller(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            # One buffer for the whole run (a fresh 1 MiB object per read costs an mmap), with
            # room in front for the bytes the masker holds back from the previous read.
            buffer = bytearray(READ_CHUNK + self._masker.keep)
            view = memoryview(buffer)
            while not self._stop.is_set():
                start = self._masker.prefill(buffer)
                try:
                    size = os.readv(self._fd, [view[start : start + READ_CHUNK]])
                except BlockingIOError:
                    poller.poll(self._poll_ms)  # empty: wait for more (or for a stop)
                    continue
                if not size:
                    break
                self._take(buffer, start + size, size)
            view.release()
            self._finish()
        except Exception:  # never let a reader death go unnoticed: the run would hang on a full pipe
            logger.exception("sandbox output reader failed")
        finally:
            self._stream.close()
            self._close_wake()
            self._sink = _discard  # the run's bound method: no reference cycle back to the run

    def _take(self, buffer: bytearray, end: int, size: int) -> None:
        """One read of ``size`` bytes, ending at ``end`` in the buffer: masked first (on the raw
        bytes, which the masker copies out of the buffer), then made valid UTF-8 where it is not
        pure ASCII, then cut into lines."""
        self.bytes_read += size
        if self.over_limit:
            return
        if self._limit is not None and self.bytes_read > self._limit:
            self.over_limit = True  # the monitor notices and stops the tree; keep nothing more
            return
        masked = self._masker.feed_buffer(buffer, end)
        if self._utf8_pending or not masked.isascii():
            masked = self._valid_utf8(masked)
        lines = self._cutter.feed(masked)
        if lines:
            self._sink(lines)

    def _valid_utf8(self, chunk: bytes, final: bool = False) -> bytes:
        """``chunk`` with invalid UTF-8 replaced (U+FFFD); a character split across two reads is
        held until its end arrives."""
        text = self._utf8.decode(chunk, final)
        self._utf8_pending = bool(self._utf8.getstate()[0])
        return text.encode("utf-8")

    def _finish(self) -> None:
        """The end of the stream: whatever was held back, masked, as the last line."""
        rest = self._masker.finish()
        if self._utf8_pending or not rest.isascii():
            rest = self._valid_utf8(rest, final=True)
        lines = self._cutter.feed(rest) + self._cutter.finish()
        if lines:
            self._sink(lines)


def _discard(_lines: bytes) -> None:
    """The sink of a reader whose stream has ended."""


class StdinWriter(_PipeThread):
    """Writes the run's stdin (recipe and secrets), then closes it: what the pipe takes at once
    on the caller's thread (a recipe's input is a few KiB, a fresh pipe holds 64 KiB), the rest,
    if any, on its own thread, which then waits for the process to read."""

    def __init__(self, stream: IO[bytes], data: bytes, name: str) -> None:
        self._stream = stream
        self._data: bytes | memoryview = data
        super().__init__(f"sandbox-in-{name}", "sandbox-in")

    def set_data(self, data: bytes) -> None:
        """What to write, when it was not known at construction (a held input); before ``start``."""
        self._data = data

    def start(self) -> None:
        """Write what fits now; a thread writes the rest (never a blocking write here)."""
        if not self._write_now():
            super().start()

    def _write_now(self) -> bool:
        """One non-blocking write on the caller's thread; True when nothing is left to write
        (the stream is closed then)."""
        view = memoryview(self._data)
        if view and not self._stop.is_set():
            try:
                os.set_blocking(self._stream.fileno(), False)
                view = view[os.write(self._stream.fileno(), view) :]
            except BlockingIOError:
                pass
            except OSError:
                view = view[len(view) :]  # the process exited or closed stdin: its business
        if view and not self._stop.is_set():
            self._data = view
            return False
        with contextlib.suppress(OSError):
            self._stream.close()
        return True

    def _run(self) -> None:
        fd = self._stream.fileno()
        os.set_blocking(fd, False)
        poller = self._poller(fd, select.POLLOUT | select.POLLERR)
        view = memoryview(self._data)
        try:
            while view and not self._stop.is_set():
                if not poller.poll(self._poll_ms):
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
            self._close_wake()
