"""The sandbox's own price, done bare: the least the mission's guarantees add to a task's CPU.

``bench.protocol_floor`` prices the protocol alone (a bare ``Popen`` in a bare directory). The
mission asks more of every run: a private work dir, a scrubbed environment, limits the executor
enforces (memory, processes, output volume; a task cgroup with memory and pids limits where the
host allows one, plus the exec wrapper's rlimits), the tree watched while it runs, the output
masked for the run's secrets and kept in a task log under the executor's retention. This module
does that for one run at a time on the caller's thread, with no framework and no extra thread
of its own, reusing the executor's own small parts where they are the honest minimum
(``remove_work_dir``, ``build_env``, ``TaskCgroup``, the spawn server, ``ProcessTree``,
``Masker``, ``open_fresh_file``), never its actors:

* the work dir made (``mkdtemp``: 0700; ``tmp`` inside) under a root made once, and removed;
* the environment built from the allowlist (HOME and TMPDIR in the work dir);
* the task cgroup made with the bench pools' memory and pids limits, joined by the child before
  its exec, and removed; skipped where the host allows none, as the executor does. Its parent is
  the floor's own, kept for the floor's life (``own_parent``), as the executor keeps its shared
  parent while it lives (``cgroup_parents.release_parents``). The child is
  forked by the executor's spawn server (``start_process``: a small interpreter forks it and runs
  the exec wrapper's set-up, the cgroup join, the rlimits, the new session, the parent-death
  signal, the umask, then execs; the child is still this process's own). That is the cheapest
  way to join before the exec: a ``preexec_fn`` fork of this process cost 2.4 ms of its own CPU
  per spawn (its page tables copied, then its writes faulting), the server 0.4 ms here and
  1.2 ms in the server; the exec wrapper alone (the fallback when the server cannot take a
  spawn) costs the recipe an interpreter start. The server's keeper thread is the one thread
  besides the caller's; the server has no idle stop (``SERVER_IDLE_S``), so no timed batch pays
  its restart;
* the tree sampled at the executor's far pacing (``pacing.FAR_INTERVAL_S``, 1 s, where the
  kernel enforces memory and pids in the task cgroup; else the sample interval) while it runs
  and once after its exit (the cgroup's members and charge; without a cgroup the executor's
  ``ProcessTree``, a walk down the kernel's children lists, and after the exit the run's
  session: the leftovers), each sample checked against the limits; the output's volume checked
  at every read and the wall time at every wake-up, a breach killing the tree;
* the output read into one reused 1 MiB buffer (``poll`` between reads, so samples fall due
  while it runs), masked as a stream with the executor's masker for the secret's values,
  written to a fresh task log file that is kept, the oldest removed beyond the executor's
  ``log_keep_files``.

What it leaves out, so it can only be cheaper than a runner with it: the CPU time limit (none
by default, as the executor's), the report's head + tail bound (the whole output is kept: the
trivial task's is a few lines), the pacing's nearer samples as a limit comes close, and what
the executor does on top: actors, its own credentials' masker, the KILL polls, the report
file, the orphan marker.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from executor.sandbox.cgroups import CgroupSupport, TaskCgroup, detect_cgroups
from executor.sandbox.environment import build_env
from executor.sandbox.limits import MiB, SandboxLimits, launcher_options
from executor.sandbox.logfile import open_fresh_file
from executor.sandbox.masking import Masker
from executor.sandbox.pacing import FAR_INTERVAL_S
from executor.sandbox.process_start import start_process
from executor.sandbox.spawner import SpawnServer
from executor.sandbox.spec import SandboxSpec
from executor.sandbox.tree import ProcessTree
from executor.sandbox.workdir import remove_work_dir

LIMITS = SandboxLimits(memory_bytes=4096 * MiB, max_processes=256, output_bytes=4096 * MiB,
                       open_files=4096, kill_grace_s=2, wall_seconds=86400.0)
"""The bench pools' limits (the executor's defaults, the output limit the bench sets)."""
KEEP_LOGS = SandboxSpec.__dataclass_fields__["log_keep_files"].default
READ_SIZE = 1 << 20
SERVER_IDLE_S = 1e6
"""The floor's spawn server is never stopped for idleness (the executor's stops after
``spawner.IDLE_S``): a floor loop that waited idle through the other rows must not pay a fresh
interpreter start in its timed batch, so the floor stays a floor, not a restart's price."""


def own_parent(support: CgroupSupport) -> tuple[CgroupSupport, list[Path]]:
    """Task cgroups under a parent of this floor's own, kept for its life by a ``keep`` child.

    A parent made and removed with each task costs two more cgroup creations and removals per
    task; the executor keeps its shared parent while it lives, and the floor one of its own (a
    sibling of the shared one, so it does not keep that alive beyond the executors). Returns the support and
    the directories to remove at the end; the support unchanged (nothing to remove) where the
    parent cannot be made (v2 without the controllers delegated).
    """
    if not support.active:
        return support, []
    made: list[Path] = []
    parents: dict[Path, Path] = {}
    try:
        for shared in dict.fromkeys(p for p in (support.memory_parent, support.pids_parent) if p):
            mine = shared.parent / f"bench-floor-{os.getpid()}"  # beside it: not keeping it alive
            mine.mkdir()
            made.append(mine)
            if support.version == "v2":
                (mine / "cgroup.subtree_control").write_text("+memory +pids")
            (mine / "keep").mkdir()
            made.append(mine / "keep")
            parents[shared] = mine
    except OSError:
        _remove_dirs(made)
        return support, []
    moved = {name: parents.get(getattr(support, name)) for name in ("memory_parent", "pids_parent")}
    return replace(support, **moved), made[::-1]


def _remove_dirs(made: list[Path]) -> None:
    for directory in sorted(made, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()


class BareSandbox:
    """Runs one process after another under the mission's guarantees, on the caller's thread."""

    def __init__(self, root: Path) -> None:
        self.work_root, self.log_dir = root / "work", root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.work_root.mkdir(parents=True, exist_ok=True, mode=0o700)  # once, not per task
        self.support, self.parents = own_parent(detect_cgroups())  # once, as the executor caches it
        self.spawner = SpawnServer(idle_s=SERVER_IDLE_S)
        self.spawner.start()  # in the background, as the executor's pool starts it
        self.logs: deque[str] = deque()
        self.buffer = bytearray(READ_SIZE)  # every read goes into this one buffer
        self.peak_memory = self.peak_processes = 0

    def start(self, key: str, argv: list[str]) -> BareRun:
        """The work dir, the cgroup, the log file and the process (its stdin still open)."""
        work = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=self.work_root))  # mkdtemp: 0700 already
        (work / "tmp").mkdir(mode=0o700)
        cgroup = TaskCgroup.create(self.support, key, LIMITS.memory_bytes, LIMITS.max_processes)
        env = build_env(os.environ, {}, {}, work)
        proc, by_server = start_process(self.spawner, launcher_options(LIMITS, cgroup), argv, env, work, key)
        log = open_fresh_file(self.log_dir / f"{key}.log")
        return BareRun(self, proc, work, cgroup, log, f"{key}.log", by_server)

    def close(self) -> None:
        """Stop the spawn server and remove the floor's own cgroup parent."""
        self.spawner.close()
        _remove_dirs(self.parents)

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
        self.kernel_enforces = cgroup is not None and None not in (cgroup.memory_dir, cgroup.pids_dir)
        walk = cgroup is None or not cgroup.dirs
        self.tree = ProcessTree(proc.pid, None, LIMITS.memory_bytes) if walk else None
        self.kept: list[bytes] = []
        """The masked output read so far (``open_output`` starts it)."""
        self.volume = 0
        """Bytes of output read so far."""

    def feed(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.close()

    def drain(self, secrets: Iterable[str]) -> tuple[int, bytes]:
        """Read the output to EOF (masked, into the log), sampling the tree on the way; then reap
        the process, sample once more (the cgroup's members, else the run's session: leftovers)
        and clean up. Its exit status and its masked output."""
        fd = self.open_output(secrets)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        due = self.began + self.interval
        while True:
            if poller.poll(max(0.0, due - time.monotonic()) * 1000) and not self.read():
                break
            now = time.monotonic()
            if now >= due:
                self.look(now)
                due += self.interval
        return self.finish()

    def open_output(self, secrets: Iterable[str]) -> int:
        """Ready to read the output, masked for ``secrets``; the descriptor to poll."""
        assert self.proc.stdout is not None
        self.stream, self.fd = Masker(secrets).stream(), self.proc.stdout.fileno()
        self.kept, self.volume, self.began = [], 0, time.monotonic()
        # the executor's pacing: 1 s while the kernel enforces memory and pids, else the interval
        self.interval = FAR_INTERVAL_S if self.kernel_enforces else LIMITS.sample_interval_s
        return self.fd

    def read(self) -> bool:
        """One read of the output into the box's buffer, masked into the log; False at its end."""
        buffer = self.box.buffer
        start = self.stream.prefill(buffer)
        size = os.readv(self.fd, [memoryview(buffer)[start:]])
        if not size:
            return False
        self.volume += size
        self.kept.append(self._write(self.stream.feed_buffer(buffer, start + size)))
        if LIMITS.output_bytes is not None and self.volume > LIMITS.output_bytes:
            self.kill(f"output {self.volume} > {LIMITS.output_bytes}")
        return True

    def look(self, now: float) -> None:
        """The run's periodic look: its wall time, then a sample of its tree."""
        if LIMITS.wall_seconds is not None and now - self.began > LIMITS.wall_seconds:
            self.kill(f"wall time > {LIMITS.wall_seconds}")
        self._sample(exited=False)

    def finish(self) -> tuple[int, bytes]:
        """After the output's end: the held-back rest, the exit status, the last sample (leftovers
        of the run outlive it never), the clean-up. The status and the masked output."""
        self.kept.append(self._write(self.stream.finish()))
        status = self.proc.wait()
        if self._sample(exited=True) > 0:
            self.kill("leftover processes")
        self._clean_up()
        return status, b"".join(self.kept)

    def _write(self, data: bytes) -> bytes:
        view = memoryview(data)
        while view:
            view = view[os.write(self.log, view):]
        return data

    def _sample(self, exited: bool) -> int:
        """Memory and process count of the tree, checked against the limits; the count."""
        if self.tree is None:
            assert self.cgroup is not None
            count, memory = len(self.cgroup.procs()), self.cgroup.memory_usage() or 0
        else:  # the executor's own walk down the kernel's children lists; the session once exited
            sample = self.tree.sample(exited)
            count, memory = sample.processes, sample.memory_bytes
        self.box.peak_memory = max(self.box.peak_memory, memory)
        self.box.peak_processes = max(self.box.peak_processes, count)
        if LIMITS.memory_bytes is not None and memory > LIMITS.memory_bytes:
            self.kill(f"memory {memory} > {LIMITS.memory_bytes}")
        if LIMITS.max_processes is not None and count > LIMITS.max_processes:
            self.kill(f"processes {count} > {LIMITS.max_processes}")
        return count

    def kill(self, why: str) -> None:
        """SIGKILL the run's tree (its cgroup's members too); the first reason is kept."""
        self.breach = self.breach or why
        if self.tree is not None:
            self.tree.signal(signal.SIGKILL)
            return
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
        if self.tree is not None:
            self.tree.close()
        if self.cgroup is not None:
            self.cgroup.remove()
