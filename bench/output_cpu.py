"""The output path alone: the executor's reader against a bare reader, on the same flood.

Usage (in the project's venv):
``python -m bench.output_cpu [LINE] [MIB] [REPEATS] [DIR] [SIDES] [LOGS]`` (1024 B lines, 256 MiB,
3 repeats, a temporary directory where the bench makes its own, every side; SIDES picks some by
the first word of their names, comma-separated: ``executor,floor``; LOGS ``kept``, the default,
or ``deleted``: each flood's file deleted after it, as the bench's rows do, so every flood
writes into the pages the one before freed).

Each repeat runs, one right after the other, a writer process flooding ``MIB`` MiB of
``LINE``-byte lines in 1 MiB writes (as ``bench/standin.py`` does, the secret in the first line
of each write) into a pipe read by:

- ``executor``: the executor's ``OutputReader`` with a ``LiveMasker`` of credentials like a
  pool's (a GMS token, an AWS key, secret key and session token) plus the recipe's secret added
  late (as a run spawned before its secrets), into a ``RunLog`` with a task log file capped at
  ``SandboxSpec.log_max_bytes``, kept (as the executor keeps its task logs) until the end;
- ``floor (a pipe into a file)``: ``bench.drain`` in this process (the 1 MiB
  pipe, one reused buffer, the same cap on the file, kept too, nothing else);
- ``floor (a pipe)``: the same without the file.

It prints MB/s (the writer's own clock, as the bench's rows) and the reader process's CPU per
MiB (this process's user + system time over the flood), and for the executor its output reader
thread's and its run log thread's share (``sandbox-log``: the count, the memory tail and the
file's writes; their ``schedstat`` by kernel thread name, sampled every 20 ms). No control plane, no actors:
what the reader's own code costs, for before/after pairs of a change to it.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.anchor import LOG_MAX_BYTES
from bench.drain import drain_pipe
from bench.world import SECRET_VALUE
from executor.sandbox.live_masking import LiveMasker
from executor.sandbox.run_log import RunLog
from executor.sandbox.streams import OutputReader

MB = 1e6
WRITER = """
import sys, time
total, line, secret = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
plain = b"x" * (line - 1) + b"\\n"
marked = (b"secret " + secret + b" ").ljust(line - 1, b"y")[: line - 1] + b"\\n"
block = marked + plain * max(1, (1 << 20) // line - 1)
out = sys.stdout.buffer
began, written = time.time(), 0
while written < total:
    out.write(block)
    written += len(block)
out.flush()
sys.stderr.write(f"{began} {time.time()} {written}\\n")
"""
CREDENTIALS = (
    "eyJhbGciOiJIUzI1NiJ9." + "bench-gms-token-" * 12,
    "ASIABENCHACCESSKEY01",
    "benchSecretAccessKey/0123456789+abcdefghij",
    "IQoJb3JpZ2luX2VjEBench" + "SessionToken0123456789+/" * 14,
)


class _Source:
    """A pool's sensitive values (``SecretSource``): fixed here."""

    version = 1

    def snapshot(self, since: float | None = None) -> tuple[int, tuple[str, ...]]:
        return 1, CREDENTIALS


class ThreadCpu:
    """This process's thread CPU (``schedstat``, ns) summed by kernel thread name, from samples
    every 20 ms (a thread's time between two samples counts for its name at the second)."""

    def __init__(self) -> None:
        self.by_name: dict[str, float] = {}
        self._last: dict[str, int] = {}
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="thread-cpu", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                task = f"/proc/self/task/{tid}"
                with open(f"{task}/comm") as comm, open(f"{task}/schedstat") as stat:
                    name, ns = comm.read().strip(), int(stat.read().split()[0])
            except (OSError, ValueError):
                continue
            if tid in self._last:
                self.by_name[name] = self.by_name.get(name, 0.0) + (ns - self._last[tid]) / 1e6
            self._last[tid] = ns

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def stop(self) -> dict[str, float]:
        """The last sample taken; ms of CPU by thread name."""
        self._stop.set()
        self._thread.join(5)
        self._sample()
        return self.by_name


def _executor(fd: int, log: Path) -> None:
    """The executor's reader, masker and run log on the pipe ``fd``, to EOF."""
    masker = LiveMasker(CREDENTIALS, _Source())
    masker.add([SECRET_VALUE])
    run_log = RunLog()
    run_log.open_file(log, LOG_MAX_BYTES)
    reader = OutputReader(os.fdopen(fd, "rb", buffering=0), masker, run_log.emit_output, None, "bench",
                          run_log.room)
    reader.start()
    reader.join(600)
    run_log.close_file()
    run_log.take_text()  # the log file stays, as the executor keeps its task logs


def _floor(directory: Path | None) -> Callable[[int, Path], None]:
    """``bench.drain`` on the pipe, with a ``directory`` into a fresh file there (kept)."""
    def read(fd: int, log: Path) -> None:
        drain_pipe(fd, log if directory is not None else None, LOG_MAX_BYTES)
        os.close(fd)
    return read


Sample = tuple[float, float, float, float]
"""MB/s, then ms of CPU per MiB: the process, the output reader thread, the run log thread."""


def _one(reader: Callable[[int, Path], None], line: int, size: int, directory: Path, delete: bool) -> Sample:
    """One flood into ``reader``: MB/s by the writer's clock, and the reader's CPU ms per MiB."""
    read_end, write_end = os.pipe()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(size), str(line), SECRET_VALUE],
                              stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    log = directory / f"flood-{time.time_ns()}.log"
    threads = ThreadCpu()
    before = resource.getrusage(resource.RUSAGE_SELF)
    reader(read_end, log)
    after = resource.getrusage(resource.RUSAGE_SELF)
    by_name = threads.stop()
    _, err = writer.communicate()
    if delete:
        log.unlink(missing_ok=True)
    began, ended, written = err.split()
    mib = int(written) / (1 << 20)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    rate = int(written) / (float(ended) - float(began)) / MB
    return rate, cpu / mib, by_name.get("sandbox-out", 0.0) / mib, by_name.get("sandbox-log", 0.0) / mib


def main() -> int:
    args = sys.argv[1:]
    line = int(args[0]) if args else 1024
    size = (int(args[1]) if len(args) > 1 else 256) << 20
    repeats = int(args[2]) if len(args) > 2 else 3
    sides = {"executor": _executor, "floor (a pipe into a file)": None, "floor (a pipe)": _floor(None)}
    if len(args) > 4:
        picked = args[4].split(",")
        sides = {side: reader for side, reader in sides.items() if side.split()[0] in picked}
    delete = len(args) > 5 and args[5] == "deleted"
    found: dict[str, list[Sample]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="bench-output-", dir=args[3] if len(args) > 3 else None) as tmp:
        directory = Path(tmp)
        if "floor (a pipe into a file)" in sides:
            sides["floor (a pipe into a file)"] = _floor(directory)
        for _ in range(repeats):
            for side, reader in sides.items():
                assert reader is not None
                found[side].append(_one(reader, line, size, directory, delete))
    print(f"{line} B lines, {size >> 20} MiB, {repeats} repeat(s), logs {'deleted' if delete else 'kept'}; "
          f"load {os.getloadavg()[0]:.2f}")
    for side, samples in found.items():
        rates = [rate for rate, *_ in samples]
        cpus = [cpu for _, cpu, *_ in samples]
        print(f"  {side:28} {statistics.median(rates):7.0f} MB/s (best {max(rates):.0f})"
              f"  {statistics.median(cpus):.3f} ms CPU/MiB (least {min(cpus):.3f})")
        if side == "executor":
            readers = sorted(sample[2] for sample in samples)
            writers = sorted(sample[3] for sample in samples)
            print(f"  {'':28} its output reader thread {statistics.median(readers):.3f} ms CPU/MiB (least "
                  f"{readers[0]:.3f}), the run log's {statistics.median(writers):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
