"""Memory is measured the way the kernel counts it: shared pages of a forked tree count once.

The two cases of issue 12.3: a fork bomb under a 200 MiB / 40-process limit was reported as a
memory breach (summed RSS 408.9 MiB while its cgroup held 38.5 MiB), and a harmless recipe
forking 25 sleeping workers (real peak 27 MiB) was killed as 255.8 MiB. Both run with the
task's cgroup (where this host allows one) and with the psutil monitor alone (proportional set
sizes). A real memory breach still names the cgroup's own peak, the same in breach and report.
"""

from __future__ import annotations

import os

import psutil
import pytest

from executor.sandbox.cgroups import detect_cgroups
from executor.sandbox.limits import MiB
from executor.sandbox.tree import ProcessTree

from .conftest import RunFactory
from .helpers import py
from .test_run_limits import FORK_BOMB, GROW_MEMORY, WITH_AND_WITHOUT_CGROUP, limits

FORKED_SLEEPERS = """
    import os, sys, time
    ballast = bytearray(8 * 2**20)          # 8 MiB the children share with the parent
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    children = []
    for _ in range(25):
        pid = os.fork()
        if pid == 0:
            time.sleep(1.5)                 # long enough for many samples at 50 ms
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    print("all 25 workers done", flush=True)
"""


@WITH_AND_WITHOUT_CGROUP
def test_forked_sleepers_under_the_limit_are_not_killed(run_sandbox: RunFactory, use_cgroup: bool) -> None:
    _, result = run_sandbox(py(FORKED_SLEEPERS), limits=limits(memory_bytes=200 * MiB), use_cgroup=use_cgroup)
    assert result.breach is None, result.breach.message if result.breach else ""
    assert result.outcome == "exited" and result.exit_code == 0
    assert "all 25 workers done" in result.log_text
    assert result.max_processes >= 20, "the sampler saw the workers"
    assert result.peak_rss_bytes < 120 * MiB, "shared pages counted once per process"


@WITH_AND_WITHOUT_CGROUP
def test_fork_bomb_is_a_processes_breach_not_memory(run_sandbox: RunFactory, use_cgroup: bool) -> None:
    _, result = run_sandbox(
        py(FORK_BOMB), limits=limits(memory_bytes=200 * MiB, max_processes=40), use_cgroup=use_cgroup
    )
    assert result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "processes", result.breach.message
    assert result.peak_rss_bytes < 200 * MiB
    if use_cgroup:
        assert "the cgroup refused" in result.breach.message


@pytest.mark.skipif(not detect_cgroups().active, reason="no writable cgroup here")
def test_kernel_kill_reports_the_cgroups_peak_in_breach_and_report(run_sandbox: RunFactory) -> None:
    _, result = run_sandbox(py(GROW_MEMORY), limits=limits(memory_bytes=100 * MiB), use_cgroup=True)
    assert result.breach is not None and result.breach.limit == "memory"
    assert result.peak_rss_bytes == int(result.breach.measured), "one peak, the same in breach and report"
    assert 100 * MiB <= result.peak_rss_bytes <= 101 * MiB, "the kernel's maximum, not a stale sample"


def test_tree_memory_is_proportional_without_a_cgroup() -> None:
    """PSS of this process and a forked copy adds up to about one copy, not two."""
    ballast = bytearray(64 * MiB)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child holds the shared ballast until the parent closes the pipe
        os.close(write)
        os.read(read, 1)
        os._exit(0)
    os.close(read)
    try:
        tree = ProcessTree(os.getpid())  # this process and the forked copy
        sample = tree.sample()
        assert pid in tree.members() and sample.memory_source == "pss"
        rss = sum(psutil.Process(member).memory_info().rss for member in tree.members())
        assert sample.memory_bytes < rss - 48 * MiB, "the shared ballast counted about once, not twice"
    finally:
        os.close(write)
        os.waitpid(pid, 0)
    del ballast
