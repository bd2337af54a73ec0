"""A run's pipes: the merged stdout/stderr read by chunks, stdin fed by a thread when it must.

The reader works on chunks, never on single lines: it enlarges the pipe (``F_SETPIPE_SZ``, up
to 1 MiB), reads as much as is there in one call into a reused buffer, masks the chunk on
bytes (``StreamMasker``, which holds back the few bytes a secret split across two reads may
still need), replaces invalid UTF-8 (only in chunks that are not pure ASCII), and hands whole
lines on (``LineCutter``). It counts bytes for the output limit; past that limit it only drains the
pipe (so the dying tree never blocks on a full pipe) and keeps nothing. It has no thread of its
own in a run: the run's one thread polls the pipe beside the process's exit and the stop
(``waiter``) and reads when the pipe has data, so a run costs one thread and no hand-over
between a reader and a supervisor. The stdin writer writes what the pipe takes at once; only
a larger input gets a thread, which waits in ``poll`` on the pipe and on an eventfd that
``stop`` signals, so the run can stop it even when the process never reads.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import functools
import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import IO, Protocol

from loguru import logger

from executor.sandbox.masking import Masker
from executor.sandbox.output import LineCutter
from executor.supervision.spare_threads import SPARES, Job

READ_CHUNK = 1 << 20
FIRST_CHUNK = 64 << 10
"""The first reads' size: most runs print a few KiB in all, and a 1 MiB buffer cost every run
its zeroing and page faults; the first read that fills it grows the buffer to ``READ_CHUNK``
for the rest of the run (a flood's)."""
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


class Room(Protocol):
    """Where the reader's lines wait to be kept (``log_writer.OrderedHandOff``): no read while
    it is full, so the recipe blocks on its full pipe instead of the reader on the sink."""

    def wants_room(self) -> bool: ...

    @property
    def room_fd(self) -> int: ...


class OutputReader:
    """Reads ``stream`` by chunks, handing masked whole lines to ``sink``; driven by the run's
    one thread (``waiter``: it polls the pipe beside the process's exit and the stop), or alone
    on a thread of its own (``start``, for a pipe read apart from any run). With a ``room``, no
    read is made while it says it is full (``room_blocked``)."""

    def __init__(
        self,
        stream: IO[bytes],
        masker: Masker,
        sink: Callable[[bytes], None],
        output_limit: int | None,
        name: str,
        room: Room | None = None,
    ) -> None:
        self._fd = stream.fileno()
        self.room = room
        self._stream = stream
        self._masker = masker.stream()
        self._sink = sink
        self._limit = output_limit
        self._cutter = LineCutter()
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._utf8_pending = False
        self._name = name
        self._buffer: bytearray | None = None
        self._view: memoryview | None = None
        self._chunk = FIRST_CHUNK
        self._thread: Job | None = None
        self.bytes_read = 0
        self.over_limit = False
        self.ended = False
        """The stream reached its end (or was given up, or failed): it is closed, nothing more comes."""

    def open(self) -> int:
        """Make the pipe non-blocking and large; the descriptor to poll. Once, before reading."""
        os.set_blocking(self._fd, False)
        grow_pipe(self._fd)
        self._new_buffer(FIRST_CHUNK)
        return self._fd

    def _new_buffer(self, chunk: int) -> None:
        """One buffer reused by every read (a fresh 1 MiB object per read costs an mmap), with
        room in front for the bytes the masker holds back from the previous read."""
        if self._view is not None:
            self._view.release()
        self._chunk = chunk
        self._buffer = bytearray(chunk + self._masker.keep)
        self._view = memoryview(self._buffer)

    def read_once(self) -> bool:
        """One non-blocking read; True when it got bytes (more may be there). At the stream's end
        the held-back rest goes out and the stream is closed (``ended``). A failure ends the
        reading too, logged: the recipe then gets EPIPE instead of hanging on a full pipe."""
        if self.ended:
            return False
        if self._view is None:
            self.open()
        assert self._buffer is not None and self._view is not None
        try:
            start = self._masker.prefill(self._buffer)
            try:
                size = os.readv(self._fd, [self._view[start : start + self._chunk]])
            except BlockingIOError:
                return False
            if size:
                self._take(self._buffer, start + size, size)
                if size == self._chunk < READ_CHUNK:
                    self._new_buffer(READ_CHUNK)  # more output than most runs': read it by MiBs
                return True
        except Exception:
            logger.exception("sandbox output reader failed")
            self._close()
            return False
        self.end()
        return False

    def end(self) -> None:
        """The stream is over (or given up: a process that left the tree still holds it):
        whatever was held back goes out as the last line, and the stream is closed."""
        if self.ended:
            return
        try:
            self._finish()
        except Exception:
            logger.exception("sandbox output reader failed")
        finally:
            self._close()

    def _close(self) -> None:
        self.ended = True
        if self._view is not None:
            self._view.release()
        self._view = self._buffer = None
        self._stream.close()
        self._sink = _discard  # the run's bound method: no reference cycle back to the run

    def drain(self, timeout_s: float) -> bool:
        """Read until the stream's end, for up to ``timeout_s``, then give up; True when the
        stream is over by itself (its end, or a failed read), False when given up."""
        if self.ended:
            return True
        deadline = time.monotonic() + timeout_s
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.room_blocked():
                self._wait_room(_poll_ms(left))
                continue
            if self.read_once():
                continue
            if self.ended or not poller.poll(_poll_ms(left)):
                break
        at_end = self.ended
        self.end()
        return at_end

    def room_blocked(self) -> bool:
        """True while the sink's room is full: no read until its ``room_fd`` is readable."""
        return self.room is not None and not self.ended and self.room.wants_room()

    def _wait_room(self, wait_ms: int | None) -> None:
        """Wait for the sink's room to come back (``wait_ms``: at most), and clear its signal."""
        assert self.room is not None
        room_fd = self.room.room_fd
        poller = select.poll()
        poller.register(room_fd, select.POLLIN)
        if poller.poll(wait_ms):
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(room_fd)

    def start(self) -> None:
        """Read the whole stream on a thread of its own (a spare one), apart from any run."""
        self._thread = SPARES.start(lambda: self.drain(math.inf), f"sandbox-out-{self._name}", "sandbox-out")

    def join(self, timeout: float) -> bool:
        """Wait for ``start``'s thread; True once the stream is over."""
        return self._thread.join(timeout) if self._thread is not None else self.ended

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


def _poll_ms(left_s: float) -> int | None:
    """A poll timeout for ``left_s`` seconds (None: no end)."""
    return None if math.isinf(left_s) else max(0, math.ceil(left_s * 1000))


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
