"""The spawn server works a child's set-up out before the fork; the child only makes the calls.

Every page a forked child writes is copied from the server, so ``launch.prepare`` (run in the
server) parses the options, clamps the limits to the hard limits the child will inherit and
opens the cgroups' join files, and ``launch.apply`` (run in the child) only makes the system
calls. These check what ``prepare`` hands over; the set-up itself is checked end to end by the
spawn server's, the limits' and the cgroup join's tests.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from types import ModuleType

import pytest

from executor.sandbox.spawner import LAUNCHER


def _launch() -> ModuleType:
    sys.path.insert(0, str(LAUNCHER.parent))
    try:
        import launch  # the set-up script itself, standard library only
    finally:
        sys.path.remove(str(LAUNCHER.parent))
    return launch


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_limits_are_clamped_to_the_hard_limits_the_child_inherits() -> None:
    launch = _launch()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard != resource.RLIM_INFINITY  # the kernel caps open files
    joins, limits, user, parent, libc, _policy = launch.prepare(
        {"nofile": str(hard + 1), "core": "0", "cpu": "7:9", "parent": "4321"}, [])
    assert limits == [(resource.RLIMIT_NOFILE, hard, hard), (resource.RLIMIT_CORE, 0, 0),
                      (resource.RLIMIT_CPU, 7, 9)]
    assert (joins, user, parent, libc) == ([], None, 4321, None)
    assert launch.prepare({"user": "1000"}, [])[2] == (1000, 1000)  # the group defaults to the uid


def test_join_files_are_opened_close_on_exec_and_a_bad_value_opens_none(tmp_path: Path) -> None:
    launch = _launch()
    (tmp_path / "tasks").write_text("")
    before = _open_fds()
    with pytest.raises(ValueError):
        launch.prepare({"nofile": "many"}, [str(tmp_path)])
    assert _open_fds() == before  # refused before a join file was opened: nothing to leak
    [(directory, fd)], *_ = launch.prepare({"parent": "1"}, [str(tmp_path)])
    try:
        assert directory == str(tmp_path) and isinstance(fd, int)
        assert not os.get_inheritable(fd)
        launch.join_cgroups([(directory, fd)])  # "0": the writer itself
        assert (tmp_path / "tasks").read_text() == "0"
    finally:
        os.close(fd)
    [(_, reason)], *_ = launch.prepare({}, [str(tmp_path / "gone")])
    assert isinstance(reason, str)  # the child reports it (exit 126) before running anything
