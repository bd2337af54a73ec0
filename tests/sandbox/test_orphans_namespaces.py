"""``reap_orphans`` judges only processes of its own pid namespace.

A containerised executor's recipes carry markers with the container's pids; seen from the host
those pids name other processes, so a host executor starting up took them for orphans of a dead
executor and SIGKILLed them mid-run (found running the image against the control plane).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import psutil
import pytest

from executor.sandbox import reap_orphans
from executor.sandbox.orphans import MARKER_VAR

DEAD = "999999:1:run-x"  # an owner that does not exist here


def find_marked(marker: str, deadline_s: float = 20.0) -> psutil.Process:
    """The ``sleep`` carrying ``marker``, once it runs."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["name"]):
            try:
                if proc.info["name"] == "sleep" and proc.environ().get(MARKER_VAR) == marker:
                    return proc
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no sleep with marker {marker} within {deadline_s}s")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_a_marked_process_of_another_pid_namespace_is_left_alone() -> None:
    marker = f"1:{int(time.time() * 1000)}:in-a-container"  # pid 1 *inside* its namespace
    env = dict(os.environ, **{MARKER_VAR: marker})
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "60"], env=env)
    try:
        sleeper = find_marked(marker)
        reap_orphans()
        assert sleeper.is_running() and sleeper.status() != psutil.STATUS_ZOMBIE, "killed across namespaces"
    finally:
        outer.kill()
        outer.wait(10)


@pytest.mark.alone  # the reap_orphans here must find the orphan: no executor may start meanwhile
def test_a_marked_process_of_a_dead_owner_here_is_still_reaped() -> None:
    orphan = subprocess.Popen(["sleep", "60"], env=dict(os.environ, **{MARKER_VAR: DEAD}))
    try:
        find_marked(DEAD)
        assert reap_orphans() >= 1
        assert orphan.wait(10) == -9
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(10)
