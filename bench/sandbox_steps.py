"""The executor's CPU per step of a sandbox run: ``python -m bench.sandbox_steps [N] [CGROUP] [--total]``.

Runs N trivial held-input runs (``/bin/true``, a secret to mask, a task log, a report file
name, memory and process limits) one after the other through a real spawn server, with a task
cgroup where the host allows one (``CGROUP`` 0 turns it off), as the pool's launcher does:
``start(here=True)``, then ``give_input``, then ``wait``. It prints the process's CPU per run
and, for each step, the thread CPU (``time.thread_time``) and wall time spent in it per run,
wrapped around the sandbox's own functions (nested steps are indented: an outer figure holds
its inner ones). ``--total`` leaves the steps unwrapped and prints only the CPU per run: the
figure to compare between two trees, back to back (``PYTHONPATH=<tree>``, run from outside
both trees so the tree on the path is the one measured). The spawn server's own CPU is not in
these figures. Run it under ``flock`` like the bench; others' load inflates every figure.
"""

from __future__ import annotations

import collections
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from executor.sandbox import cgroups, monitor, process_start, run, run_log, run_place, spawner, tree
from executor.sandbox.limits import MiB, SandboxLimits
from executor.sandbox.spec import SandboxSpec

SECRET = "made-up-secret-value"
STEPS: list[tuple[Any, str, str]] = [
    (run.SandboxRun, "_spawn_here", "start(here=True) on the caller's thread"),
    (run.SandboxRun, "_prepare", "  set-up"),
    (run_place, "create_work_dir", "    work dir"),
    (run_log.RunLog, "open_file", "    task log"),
    (cgroups.TaskCgroup, "create", "    task cgroup"),
    (process_start, "ServerPopen", "  spawn (Popen)"),
    (spawner.SpawnServer, "spawn", "    spawn request"),
    (run.SandboxRun, "_watch", "  watch set-up"),
    (run.SandboxRun, "give_input", "give_input"),
    (run.SandboxRun, "_main", "supervisor"),
    (monitor.Monitor, "run", "  monitor"),
    (tree.ProcessTree, "sample", "    samples"),
    (run.SandboxRun, "_finish", "  finish"),
    (run.SandboxRun, "_clean_up", "    clean-up"),
    (run_place, "remove_work_dir", "      work dir"),
    (cgroups.TaskCgroup, "remove", "      task cgroup"),
]
Totals = dict[str, list[int]]


def _wrap(owner: Any, name: str, label: str, totals: Totals) -> None:
    """Count thread CPU, wall time and calls of ``owner.name`` under ``label``."""
    inner: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(inner)
    def counted(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
        try:
            return inner(*args, **kwargs)
        finally:
            entry = totals[label]
            entry[0] += time.thread_time_ns() - cpu
            entry[1] += time.perf_counter_ns() - wall
            entry[2] += 1

    setattr(owner, name, counted)


def _one(server: spawner.SpawnServer, root: Path, index: int, use_cgroup: bool) -> None:
    spec = SandboxSpec(argv=["/bin/true"], env={"PATH": "/usr/bin:/bin"}, work_root=root / "work",
                       limits=SandboxLimits(memory_bytes=512 * MiB, max_processes=64),
                       log_file=root / "logs" / f"task-{index}.log", task_id=f"task-{index}",
                       report_file="report.json", use_cgroup=use_cgroup, hold_input=True,
                       secrets=(SECRET,))
    sandbox = run.SandboxRun(spec, spawner=server)
    sandbox.start(here=True)
    sandbox.give_input(b"{}", (SECRET,))
    if sandbox.wait(30) is None:
        raise RuntimeError(f"run {index} did not end within 30 s")


def main() -> int:
    logger.remove()
    args = [a for a in sys.argv[1:] if a != "--total"]
    count = int(args[0]) if args else 300
    use_cgroup = args[1] != "0" if len(args) > 1 else True
    totals: Totals = collections.defaultdict(lambda: [0, 0, 0])
    if "--total" not in sys.argv:
        for owner, name, label in STEPS:
            _wrap(owner, name, label, totals)
    server = spawner.SpawnServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="sandbox-steps-") as tmp:
            for index in range(5):  # warm: the server started, the code paths imported
                _one(server, Path(tmp), index, use_cgroup)
            totals.clear()
            cpu, wall = time.process_time(), time.monotonic()
            for index in range(count):
                _one(server, Path(tmp), index + 5, use_cgroup)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        server.close()
    print(f"{count} runs (cgroup {'on' if use_cgroup else 'off'}): {cpu * 1e3 / count:.3f} ms of "
          f"process CPU per run, {wall * 1e3 / count:.2f} ms of wall time")
    for label in (label for _, _, label in STEPS if label in totals):
        cpu_ns, wall_ns, calls = totals[label]
        print(f"{label:42s} {cpu_ns / 1e6 / count:6.3f} ms CPU {wall_ns / 1e6 / count:7.3f} ms wall"
              f"  {calls / count:.1f} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
