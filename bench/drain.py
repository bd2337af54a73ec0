"""The output floors' reader: the least any runner with the executor's duty does with a flood.

Usage: ``Drainer`` starts ``python -m bench.drain serve``, one process for every flood of a
bench run, and hands it each flood's pipe; it says ``ready`` once the pipe is grown and its
reads begin (the floor sends the stand-in its input only then), ``done`` at the pipe's end.

For each flood it grows the pipe to 1 MiB as the executor's reader does
(``streams.grow_pipe``), reads into one reused 1 MiB buffer, and, given a log file, writes the
flood's first ``cap`` bytes to that fresh file, as the executor keeps at most
``SandboxSpec.log_max_bytes`` of a task's log in its file (past that it only counts lines),
then reads the rest and throws it away. No masking, no lines, no memory tail: a floor no
reader with that duty goes under on this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Callable

CHUNK = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def drain_pipe(fd: int, log: str | os.PathLike[str] | None = None, cap: int = 0) -> int:
    """Read ``fd`` to its end; with ``log``, its first ``cap`` bytes go to that file. Bytes read."""
    with contextlib.suppress(OSError):  # not a pipe, or the pipe quota is spent: read it as it is
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if log is not None else None
    room = cap if out is not None else 0
    total = 0
    try:
        while size := os.readv(fd, [view]):
            total += size
            done = 0
            while out is not None and done < min(size, room):
                done += os.write(out, view[done : min(size, room)])
            room -= done
    finally:
        if out is not None:
            os.close(out)
    view.release()
    return total


_WARM_WRITER = "import os\nblock = b'x' * (1 << 20)\nfor _ in range(256):\n    os.write(1, block)\n"


class Drainer:
    """One drain process for many floods (``python -m bench.drain serve``): each flood's pipe
    is handed over a Unix socket (``SCM_RIGHTS``). A fresh process read its first flood at
    1.0-1.3 GB/s where the same loop read the next ones at 2.0-2.5 (alone, load 1.1-1.4): a
    process per flood would be a floor of a cold reader, not the least a reader does; so one
    process serves them all, and it throws a first flood away before the measured ones."""

    def __init__(self, root: str) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "bench.drain", "serve"]
        self._proc = subprocess.Popen(argv, stdin=theirs.fileno(), cwd=root)
        theirs.close()
        self._warm()

    def _warm(self) -> None:
        """One flood thrown away before the measured ones (its first is the cold one)."""
        read_end, write_end = os.pipe()
        writer = subprocess.Popen([sys.executable, "-c", _WARM_WRITER], stdout=write_end)
        os.close(write_end)
        self.drain(read_end, lambda: None)
        writer.wait(60)

    def drain(self, fd: int, begin: Callable[[], None], log: str | None = None, cap: int = 0) -> None:
        """Read the pipe ``fd`` (ours is closed) to its end; ``begin`` once the drain reads it."""
        socket.send_fds(self._sock, [f"{cap} {log}".encode() if log else b"-"], [fd])
        os.close(fd)
        if self._sock.recv(16) != b"ready":
            raise RuntimeError("the floor's drain did not take the pipe")
        begin()
        if self._sock.recv(16) != b"done":
            raise RuntimeError("the floor's drain failed")

    def close(self) -> None:
        """Stop the drain process."""
        self._sock.close()
        self._proc.wait(10)


def serve(sock: socket.socket) -> None:
    """The drain process: one flood per message (``Drainer.drain``) until the socket closes."""
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        if not message or not fds:
            return
        cap, _, log = message.decode().partition(" ")
        with contextlib.suppress(OSError):
            fcntl.fcntl(fds[0], _F_SETPIPE_SZ, CHUNK)
        sock.send(b"ready")
        drain_pipe(fds[0], log or None, int(cap) if log else 0)
        os.close(fds[0])
        sock.send(b"done")


def main() -> int:
    """``python -m bench.drain serve`` with the socket as stdin (``Drainer``)."""
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m bench.drain serve  (stdin: a Unix socket; see Drainer)")
    serve(socket.socket(fileno=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
