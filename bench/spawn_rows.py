"""The exec wrapper's own CPU, taken so that its 5 ms target can be read: paired and quiet.

The pickup rows' "CPU of the exec wrapper + CLI start-up" is the stand-in's CPU at its first
line during a live pickup (the executor and the control plane busy on the other core the whole
time) against the floor's bare ``Popen`` in a quiet loop: a CLI start-up of 30-45 ms whose
repeats spread 10-15 ms, and which grows with whatever runs beside it. These rows start the
same programs here, in the bench's process with no other row running, alternately through
the executor's own spawn path and through a bare ``Popen``, and keep each pair's difference:

* the executor's spawn: ``process_start.command`` and ``start_process`` with a spec of the
  executor's default limits (``SandboxLimits()``): a work dir (``create_work_dir``), the
  environment from the allowlist (``build_env``), a task cgroup with the default memory and
  pids limits where the host allows one, the spawn server's fork (session, stdio, work dir,
  cgroup join, rlimits, parent-death signal, subreaper, umask, signals) and the exec;
* the bare side: ``Popen`` of the same argv with the bench's full environment (the floor's way).

``WRAPPER_QUIET``: the stand-in CLI's CPU at its first line (its own ``getrusage`` stamp, as
in the pickup rows), so anything the set-up does to the CLI's start-up (a limit, the
environment) is in it; ``WRAPPER_ADDS``: each pair's difference (the executor's side minus
the bare one, taken a fraction of a second apart: the machine's slow phases cancel out).
``TINY_QUIET`` and ``TINY_ADDS``: the same for ``/bin/true``'s CPU through its exit
(``wait4``): a start-up of about a millisecond, so the set-up's own cost stands out of the
noise. The target reads ``WRAPPER_ADDS`` (``bench.targets``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from bench.stats import Figures
from bench.world import read_stamp
from executor.sandbox import SandboxSpec, build_env
from executor.sandbox.cgroups import TaskCgroup, cached_cgroups
from executor.sandbox.process_start import command, start_process
from executor.sandbox.spawner import SpawnServer
from executor.sandbox.workdir import create_work_dir, remove_work_dir

WRAPPER_QUIET = "CPU of the exec wrapper + CLI start-up, quiet"
WRAPPER_ADDS = "CPU the exec wrapper adds to the CLI start-up, paired"
TINY_QUIET = "CPU of the exec wrapper + /bin/true, quiet"
TINY_ADDS = "CPU the exec wrapper adds to /bin/true, paired"
EXECUTOR = "executor"
BARE = "bare Popen"
TINY = ["/bin/true"]


class SpawnPairs:
    """The rows' programs and places; each ``add`` runs a spawn server of its own and stops it
    (no thread or process of it is left in the bench's process for the rows that follow)."""

    def __init__(self, standin: Path, stamps: Path, work_root: Path) -> None:
        self.argv = [str(standin), "ingest", "run", "-c", "-"]
        self.stamps = stamps
        self.work_root = work_root
        self.server = SpawnServer()
        self.count = 0

    def add(self, figures: Figures, pairs: int) -> None:
        """One unrecorded pair of each (the server's start), then ``pairs`` pairs of each
        program, every other pair with the bare side first."""
        self.server = SpawnServer()
        try:
            for sandboxed in (True, False):
                for tiny in (True, False):
                    self.sample(sandboxed, tiny)
            self._pairs(figures, pairs)
        finally:
            self.server.close()

    def _pairs(self, figures: Figures, pairs: int) -> None:
        rows: dict[str, dict[str, list[float]]] = {m: {EXECUTOR: [], BARE: []}
                                                   for m in (WRAPPER_QUIET, TINY_QUIET)}
        for index in range(pairs):
            for measure, tiny in ((WRAPPER_QUIET, False), (TINY_QUIET, True)):
                order = (True, False) if index % 2 == 0 else (False, True)
                for sandboxed in order:
                    first, total = self.sample(sandboxed, tiny)
                    rows[measure][EXECUTOR if sandboxed else BARE].append(total if tiny else first or 0.0)
        for (measure, sides), adds in zip(rows.items(), (WRAPPER_ADDS, TINY_ADDS), strict=True):
            figures.add(measure, EXECUTOR, sides[EXECUTOR], "ms")
            figures.add(measure, BARE, sides[BARE], "ms")
            paired = [a - b for a, b in zip(sides[EXECUTOR], sides[BARE], strict=True)]
            figures.add(adds, EXECUTOR, paired, "ms")

    def sample(self, sandboxed: bool, tiny: bool) -> tuple[float | None, float]:
        """One start: ms of CPU at the stand-in's first line (None for ``/bin/true``), ms in all."""
        self.count += 1
        tag = f"spawn-pair-{os.getpid()}-{self.count}"
        recipe = {"source": {"config": {"stamps": str(self.stamps), "tag": tag}}}
        envelope = b"" if tiny else json.dumps({"__recipe_yaml__": json.dumps(recipe),
                                                "__secrets__": {}}).encode()
        argv = TINY if tiny else self.argv
        if not sandboxed:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            return self._finish(proc, envelope, tag, tiny)
        work_dir = create_work_dir(self.work_root, tag)
        spec = SandboxSpec(argv=argv, work_root=self.work_root, task_id=tag,
                           env=build_env(os.environ, {}, {}, work_dir))
        group = TaskCgroup.create(cached_cgroups(), tag, spec.limits.memory_bytes, spec.limits.max_processes)
        try:
            argv, env, options = command(spec, work_dir, group)
            proc, _ = start_process(self.server, options, argv, env, work_dir, tag, server_only=True)
            try:
                return self._finish(proc, envelope, tag, tiny)
            finally:
                self.server.reaped()
        finally:
            if group is not None:
                group.remove()
            remove_work_dir(work_dir)

    def _finish(self, proc: subprocess.Popen[bytes], envelope: bytes, tag: str,
                tiny: bool) -> tuple[float | None, float]:
        """Feed it, read it to EOF, reap it with ``wait4`` (its own CPU through its exit)."""
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):  # /bin/true reads nothing
            proc.stdin.write(envelope)
        proc.stdin.close()
        proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stamp = None if tiny else read_stamp(self.stamps, f"{tag}.start")
        if proc.returncode != 0 or (stamp is None and not tiny):
            raise RuntimeError(f"spawn pair {tag} failed: exit {proc.returncode}")
        first = None if stamp is None else float(stamp["cpu"]) * 1000
        return first, (usage.ru_utime + usage.ru_stime) * 1000
