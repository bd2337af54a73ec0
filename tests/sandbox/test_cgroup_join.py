"""A recipe is in its task cgroup before it runs anything, however it joined.

On cgroup v1 the set-up (``launch.py``) moves its single thread with a "0" written to
``tasks``, which spares the kernel's global lock (and its RCU wait); a process with more than
one thread must move as a whole, through ``cgroup.procs``. Both ways are checked here on real
cgroups: a recipe started by the spawn server and by the exec wrapper reads its own
``/proc/self/cgroup``, and a forked child with a second thread joins with every thread.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox.cgroups import TaskCgroup, detect_cgroups
from executor.sandbox.spawner import LAUNCHER, SpawnServer

from .helpers import py

pytestmark = pytest.mark.skipif(not detect_cgroups().active, reason="no writable cgroup here")

SHOW_CGROUPS = """
    import sys
    sys.stdin.read()
    print(open("/proc/self/cgroup").read(), flush=True)
"""


def test_the_recipe_runs_in_its_task_cgroup(make_spec: Callable[..., SandboxSpec],
                                             spawner: SpawnServer | None) -> None:
    run = SandboxRun(make_spec(py(SHOW_CGROUPS), task_id="join-check"), spawner=spawner)
    run.start()
    result = run.wait(60)
    assert result is not None and result.exit_code == 0, result
    lines = [line for line in result.log_text.splitlines() if "join-check-p" in line]
    controllers = {line.split(":")[1] for line in lines}
    support = detect_cgroups()
    expected = {""}  # v2: the one unified line
    if support.version == "v1":
        parents = (("memory", support.memory_parent), ("pids", support.pids_parent))
        expected = {name for name, parent in parents if parent}
    assert controllers >= expected, result.log_text


def _members(directory: Path) -> set[int]:
    return {int(t) for t in (directory / "tasks").read_text().split()} if (directory / "tasks").exists() \
        else {int(t) for t in (directory / "cgroup.threads").read_text().split()}


def test_a_process_with_two_threads_joins_with_both() -> None:
    group = TaskCgroup.create(detect_cgroups(), "join-threads", None, None)
    assert group is not None
    sys.path.insert(0, str(LAUNCHER.parent))
    try:
        import launch  # the set-up script itself, standard library only
    finally:
        sys.path.remove(str(LAUNCHER.parent))
    read, write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        helper = threading.Thread(target=os.read, args=(done_read, 1))  # alive until the parent looked
        helper.start()
        alone = len(os.listdir("/proc/self/task")) == 1  # as ``launch.main`` decides: False here
        launch.join_cgroups(launch.open_joins([str(d) for d in group.dirs], alone))
        os.write(write, " ".join(os.listdir("/proc/self/task")).encode())
        helper.join()
        os._exit(0)
    try:
        os.close(write)
        tids = {int(t) for t in os.read(read, 4096).split()}
        assert len(tids) == 2
        for directory in group.dirs:
            assert tids <= _members(directory), f"a thread stayed outside {directory.name}"
    finally:
        os.write(done_write, b"x")
        for fd in (read, done_read, done_write):
            os.close(fd)
        os.waitpid(pid, 0)
        group.remove()
