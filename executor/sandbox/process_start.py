"""How a run's process starts: its command line, environment and set-up options (``command``),
then the start itself (``start_process``): forked by the spawn server, or through the exec
wrapper (``launch.py``), with the same set-up either way, in a new session, stdio on pipes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from loguru import logger

from executor.errors import BadInputError
from executor.sandbox.cgroups import TaskCgroup
from executor.sandbox.isolation import bwrap_prefix
from executor.sandbox.limits import launcher_options
from executor.sandbox.orphans import MARKER_VAR, owner_token
from executor.sandbox.spawner import LAUNCHER, ServerPopen, SpawnServer, SpawnUnavailable
from executor.sandbox.spec import SandboxSpec


def command(spec: SandboxSpec, work_dir: Path,
            cgroup: TaskCgroup | None) -> tuple[list[str], dict[str, str], list[str]]:
    """The program's argv (paths filled in, behind bubblewrap if asked), its environment (HOME,
    TMPDIR and the orphan marker set) and the wrapper's options (limits, cgroup, uid)."""
    report = str(work_dir / spec.report_file) if spec.report_file else ""
    argv = [a.replace("{work_dir}", str(work_dir)).replace("{report_file}", report) for a in spec.argv]
    env = dict(spec.env)
    if shutil.which(argv[0], path=env.get("PATH", os.defpath)) is None:
        raise BadInputError(f"program not found or not executable: {argv[0]}")
    if spec.isolation == "bwrap":
        argv = [*bwrap_prefix(work_dir, spec.hide_paths, argv[0], spec.run_as is not None), *argv]
    env.update(HOME=str(work_dir), TMPDIR=str(work_dir / "tmp"),
               **{MARKER_VAR: f"{owner_token()}:{work_dir.name}"})
    options = [*launcher_options(spec.limits, cgroup),
               *(spec.run_as.launcher_options() if spec.run_as is not None else ())]
    return argv, env, options


def start_process(spawner: SpawnServer | None, options: list[str], argv: list[str], env: dict[str, str],
                  work_dir: Path, task_id: str,
                  server_only: bool = False) -> tuple[subprocess.Popen[bytes], bool]:
    """The process, and whether the spawn server forked it. Through the server when there is one
    that takes the spawn, else through the exec wrapper; with ``server_only`` never the wrapper
    (``SpawnUnavailable``, nothing started): its parent-death signal follows the thread that
    starts it, so only a thread that lives as long as the process may (the run's supervisor)."""
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                             "stderr": subprocess.STDOUT, "cwd": work_dir, "env": env, "bufsize": 0}
    assert spawner is not None or not server_only, "server_only needs a spawn server"
    if spawner is not None:
        try:
            return ServerPopen(spawner, options, argv, **pipes), True
        except SpawnUnavailable as exc:
            if server_only:
                raise
            logger.debug("spawn of {} through the exec wrapper: {}", task_id, exc)
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), *options, "--", *argv],
                            start_new_session=True, close_fds=True, **pipes)
    return proc, False
