"""Clean-up after an executor that died: its recipes' leftover processes and cgroups.

The parent-death signal kills a run's main process when the executor dies, but not what that
process forked. Every run's environment carries ``REMOTE_EXECUTOR_SANDBOX=<pid>:<start>:<run>``
(the executor's pid and start time), and each task cgroup's name carries ``-p<pid>-``. At
start-up, ``reap_orphans`` kills processes whose marker names an executor that is gone, and
removes task cgroups whose creator is gone (killing what is still inside), and v1's shared
parent once empty (a live executor keeps it while it runs: ``cgroup_parents.release_parents``; v2's
delegated ``tasks`` is never removed).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

import psutil
from loguru import logger

from executor.sandbox.cgroup_parents import made_here
from executor.sandbox.cgroups import CgroupSupport, TaskCgroup, detect_cgroups

MARKER_VAR = "REMOTE_EXECUTOR_SANDBOX"
_CGROUP_OWNER = re.compile(r"-p(\d+)-[0-9a-f]{6}$")


_owner: tuple[int, str] | None = None
"""This process's pid and token, so a run does not ask psutil again (a forked child asks anew)."""


def owner_token() -> str:
    """``<pid>:<start time in ms>`` of this executor process: the first part of every marker."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:
        _owner = (pid, f"{pid}:{int(psutil.Process(pid).create_time() * 1000)}")
    return _owner[1]


def _owner_alive(pid: int, start_ms: int | None) -> bool:
    try:
        proc = psutil.Process(pid)
        same = start_ms is None or int(proc.create_time() * 1000) == start_ms
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pid_namespace(pid: int | str) -> str | None:
    """The pid namespace of ``pid`` (``pid:[4026531836]``), None where /proc does not say."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def reap_orphans(cgroups: CgroupSupport | None = None) -> int:
    """Kill leftover processes and remove stale task cgroups of dead executors; how many processes.

    A marker's pid means something only in the pid namespace it was written in: the recipes of
    an executor in a container carry the container's pids, which name other processes (or none)
    out here. So only processes in this executor's own pid namespace are judged; without that, a
    host's executor starting up killed the running recipes of every containerised executor.
    """
    killed = 0
    own_namespace = _pid_namespace("self")
    for proc in psutil.process_iter():
        try:
            marker = proc.environ().get(MARKER_VAR)
        except psutil.Error:
            continue
        if not marker or _pid_namespace(proc.pid) != own_namespace:
            continue
        pid, _, rest = marker.partition(":")
        start, _, _ = rest.partition(":")
        if pid.isdigit() and not _owner_alive(int(pid), int(start) if start.isdigit() else None):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed += 1
    killed += _reap_cgroups(cgroups if cgroups is not None else detect_cgroups())
    if killed:
        logger.warning("killed {} leftover recipe process(es) of an earlier executor", killed)
    return killed


def _reap_cgroups(support: CgroupSupport) -> int:
    killed = 0
    for parent in {p for p in (support.memory_parent, support.pids_parent) if p is not None}:
        for directory in _children(parent):
            match = _CGROUP_OWNER.search(directory.name)
            if match is None or _created_by_live(int(match.group(1)), directory):
                continue
            group = TaskCgroup(support.version, directory, None)
            members = group.pids()
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed += len(members)
            group.remove(timeout_s=2.0)
            logger.info("removed stale task cgroup {}", directory)
        if made_here(parent):  # v2's delegated ``tasks`` stays: it is not ours to remove
            with contextlib.suppress(OSError):  # empty: a crashed executor left it (a live one keeps it)
                parent.rmdir()
    return killed


def _created_by_live(pid: int, directory: Path) -> bool:
    """True when ``pid`` lives and was started before the cgroup was made (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= directory.stat().st_mtime + 1
    except (psutil.Error, OSError):
        return False


def _children(parent: Path) -> list[Path]:
    try:
        return [p for p in parent.iterdir() if p.is_dir()]
    except OSError:
        return []
