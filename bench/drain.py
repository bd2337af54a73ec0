"""The output floors' reader: the least any runner with the executor's duty does with a flood.

Usage: ``python -m bench.drain [LOG CAP]`` with the pipe as its stdin; it prints ``ready`` once
the pipe is grown and its reads begin (the floor sends the stand-in its input only then).

It grows the pipe to 1 MiB as the executor's reader does (``streams.grow_pipe``: the default
64 KiB pipe alone caps a reader at a quarter of what this VM's pipes move), reads into one
reused 1 MiB buffer, and with ``LOG`` writes the first ``CAP`` bytes to a fresh file there,
as the executor keeps at most ``SandboxSpec.log_max_bytes`` of a task's log in its file (past
that it only counts lines), then reads the rest and throws it away. No masking, no lines, no
memory tail: a floor no reader that keeps the log can go under on this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys

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


def main() -> int:
    """``python -m bench.drain [LOG CAP]``: drain stdin (into ``LOG``, kept as the executor
    keeps its task logs: pages freed right after a flood would make the next row's writes
    cheaper than a kept log's)."""
    log = sys.argv[1] if len(sys.argv) > 2 else None
    with contextlib.suppress(OSError):
        fcntl.fcntl(0, _F_SETPIPE_SZ, CHUNK)
    print("ready", flush=True)  # the flood may begin: this process's start-up is not timed
    drain_pipe(0, log, int(sys.argv[2]) if log is not None else 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
