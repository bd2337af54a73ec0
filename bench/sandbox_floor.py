"""The sandbox's own price, done bare: the least the mission's guarantees add to a task's CPU.

``bench.protocol_floor`` prices the protocol alone (a bare ``Popen`` in a bare directory). The
mission asks more of every run: a private work dir, a scrubbed environment, limits the executor
enforces (memory, processes, output volume; a task cgroup with memory and pids limits where the
host allows one, plus the exec wrapper's rlimits), the tree watched while it runs, the output
masked for the run's secrets and kept in a task log under the executor's retention. This module
does exactly that for one run at a time on the caller's thread, with no framework and no extra
thread of its own, reusing the executor's own small parts where they are the honest minimum
(``create_work_dir``/``remove_work_dir``, ``build_env``, ``TaskCgroup``, the spawn server,
``Masker``, ``open_fresh_file``), never its actors:

* the work dir made (0700, ``tmp`` inside) and removed;
* the environment built from the allowlist (HOME and TMPDIR in the work dir);
* the task cgroup made with the bench pools' memory and pids limits, joined by the child before
  its exec, and removed; skipped where the host allows none, as the executor does. The child is
  forked by the executor's spawn server (``start_process``: a small interpreter forks it and runs
  the exec wrapper's set-up, the cgroup join, the rlimits, the new session, the parent-death
  signal, the umask, then execs; the child is still this process's own). That is the cheapest
  way to join before the exec: a ``preexec_fn`` fork of this process cost 2.4 ms of its own CPU
  per spawn (its page tables copied, then its writes faulting), the server 0.4 ms here and
  1.2 ms in the server; the exec wrapper alone (the fallback when the server cannot take a
  spawn) costs the recipe an interpreter start. The server's keeper thread is the one thread
  besides the caller's; the server has no idle stop (``SERVER_IDLE_S``), so no timed batch pays
  its restart;
* the tree sampled at the executor's sample interval while it runs and once after its exit
  (memory: the cgroup's charge, else the members' RSS; the process count), each sample checked
  against the limits, and the output's volume against its limit, a breach killing the tree;
* the output read in 1 MiB reads (``poll`` between them, so samples fall due while it runs),
  masked as a stream with the executor's masker for the secret's values, written to a fresh task
  log file that is kept, the oldest removed beyond the executor's ``log_keep_files``.

What it leaves out is what the executor does on top: actors, its own credentials' masker, the
pacing, the KILL polls, the report file, the orphan marker, the spawn server.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import psutil

from executor.sandbox.cgroups import TaskCgroup, detect_cgroups
from executor.sandbox.environment import build_env
from executor.sandbox.limits import MiB, SandboxLimits, launcher_options
from executor.sandbox.logfile import open_fresh_file
from executor.sandbox.masking import Masker
from executor.sandbox.process_start import start_process
from executor.sandbox.spawner import SpawnServer
from executor.sandbox.spec import SandboxSpec
from executor.sandbox.workdir import create_work_dir, remove_work_dir

LIMITS = SandboxLimits(memory_bytes=4096 * MiB, max_processes=256, output_bytes=4096 * MiB,
                       open_files=4096, kill_grace_s=2)
"""The bench pools' limits (the executor's defaults, the output limit the bench sets)."""
KEEP_LOGS = SandboxSpec.__dataclass_fields__["log_keep_files"].default
READ_SIZE = 1 << 20
SERVER_IDLE_S = 1e6
"""The floor's spawn server is never stopped for idleness (the executor's stops after
``spawner.IDLE_S``): a floor loop that waited idle through the other rows must not pay a fresh
interpreter start in its timed batch, so the floor stays a floor, not a restart's price."""


class BareSandbox:
    """Runs one process after another under the mission's guarantees, on the caller's thread."""

    def __init__(self, root: Path) -> None:
        self.work_root, self.log_dir = root / "work", root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.support = detect_cgroups()  # once, as the executor caches it
        self.spawner = SpawnServer(idle_s=SERVER_IDLE_S)
        self.spawner.start()  # in the background, as the executor's pool starts it
        self.logs: deque[str] = deque()
        self.peak_memory = self.peak_processes = 0

    def start(self, key: str, argv: list[str]) -> BareRun:
        """The work dir, the cgroup, the log file and the process (its stdin still open)."""
        work = create_work_dir(self.work_root, key)
        cgroup = TaskCgroup.create(self.support, key, LIMITS.memory_bytes, LIMITS.max_processes)
        env = build_env(os.environ, {}, {}, work)
        proc, by_server = start_process(self.spawner, launcher_options(LIMITS, cgroup), argv, env, work, key)
        log = open_fresh_file(self.log_dir / f"{key}.log")
        return BareRun(self, proc, work, cgroup, log, f"{key}.log", by_server)

    def close(self) -> None:
        """Stop the spawn server (it stops by itself too once idle)."""
        self.spawner.close()

    def keep_log(self, name: str) -> None:
        """Retention as the executor's index does it: the newest kept, the oldest unlinked past
        ``KEEP_LOGS`` (one ``unlink``, no listing)."""
        self.logs.append(name)
        while len(self.logs) > KEEP_LOGS:
            (self.log_dir / self.logs.popleft()).unlink(missing_ok=True)


class BareRun:
    """One process of a ``BareSandbox``: fed, drained, watched, then cleaned up."""

    def __init__(self, box: BareSandbox, proc: subprocess.Popen[bytes], work: Path,
                 cgroup: TaskCgroup | None, log: int, log_name: str, by_server: bool) -> None:
        self.box, self.proc, self.work, self.cgroup = box, proc, work, cgroup
        self.log, self.log_name = log, log_name
        self.breach = ""
        self.spawned = by_server

    def feed(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.close()

    def drain(self, secrets: Iterable[str]) -> tuple[int, bytes]:
        """Read the output to EOF (masked, into the log), sampling the tree on the way; then reap
        the process, sample once more and clean up. Its exit status and its masked output."""
        assert self.proc.stdout is not None
        stream, fd = Masker(secrets).stream(), self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        interval, kept, volume = LIMITS.sample_interval_s, [], 0
        due = time.monotonic() + interval
        while True:
            if poller.poll(max(0.0, due - time.monotonic()) * 1000):
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    break
                volume += len(chunk)
                kept.append(self._write(stream.feed(chunk)))
                if LIMITS.output_bytes is not None and volume > LIMITS.output_bytes:
                    self._kill(f"output {volume} > {LIMITS.output_bytes}")
            if time.monotonic() >= due:
                self._sample()
                due += interval
        kept.append(self._write(stream.finish()))
        status = self.proc.wait()
        if self._sample() > 0:  # leftovers of the run outlive it never
            self._kill("leftover processes")
        self._clean_up()
        return status, b"".join(kept)

    def _write(self, data: bytes) -> bytes:
        view = memoryview(data)
        while view:
            view = view[os.write(self.log, view):]
        return data

    def _sample(self) -> int:
        """Memory and process count of the tree, checked against the limits; the count."""
        cgroup = self.cgroup
        if cgroup is not None and cgroup.dirs:
            count = len(cgroup.procs())
            memory = cgroup.memory_usage() or 0
        else:
            memory = count = 0
            try:
                root = psutil.Process(self.proc.pid)
                for member in [root, *root.children(recursive=True)]:
                    memory, count = memory + member.memory_info().rss, count + 1
            except psutil.Error:
                pass  # gone (or a zombie): what was read so far
        self.box.peak_memory = max(self.box.peak_memory, memory)
        self.box.peak_processes = max(self.box.peak_processes, count)
        if LIMITS.memory_bytes is not None and memory > LIMITS.memory_bytes:
            self._kill(f"memory {memory} > {LIMITS.memory_bytes}")
        if LIMITS.max_processes is not None and count > LIMITS.max_processes:
            self._kill(f"processes {count} > {LIMITS.max_processes}")
        return count

    def _kill(self, why: str) -> None:
        self.breach = self.breach or why
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def _clean_up(self) -> None:
        if self.spawned:  # the server counts its children until they are reaped
            self.spawned = False
            self.box.spawner.reaped()
        os.close(self.log)
        self.box.keep_log(self.log_name)
        remove_work_dir(self.work)
        if self.cgroup is not None:
            self.cgroup.remove()
