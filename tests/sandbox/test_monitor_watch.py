"""How the monitor watches a run (issue 12): the exit wakes it, only the run's own processes
are read, samples are paced by the nearest limit, and a memory breach gets SIGKILL at once.

Real processes throughout; the only stand-ins are counters wrapped around the module's own
file reads, to show what a sample reads (and what it does not: all of ``/proc``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from executor.sandbox import monitor, pacing, procfs, pss, waiter
from executor.sandbox.cgroups import TaskCgroup, detect_cgroups
from executor.sandbox.limits import GiB, MiB, SandboxLimits
from executor.sandbox.pacing import FAR_INTERVAL_S, MIN_INTERVAL_S, Pacer
from executor.sandbox.tree import ProcessTree, TreeSample
from executor.sandbox.waiter import ExitWaiter

from .conftest import RunFactory
from .helpers import py, wait_until
from .test_run_limits import WITH_AND_WITHOUT_CGROUP, limits

LONG_S = 60.0


def _spawn(code: str) -> subprocess.Popen[bytes]:
    """A child running ``code`` in its own session, its stdin and stdout piped to us."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True)


def test_the_exit_wakes_the_waiter_and_leaves_the_status_to_popen(children: list[subprocess.Popen[bytes]]
                                                                  ) -> None:
    proc = _spawn("import sys; sys.stdin.read(); sys.exit(7)")
    children.append(proc)
    waiter = ExitWaiter(proc.pid)
    try:
        assert waiter.exit_watched
        waiter.wait(0.01)
        assert not waiter.exited, "running: the sleep ran to its timeout"
        assert proc.stdin is not None
        proc.stdin.close()  # the child exits 7
        waiter.wait(LONG_S)
        assert waiter.exited, "the exit ended the sleep, long before its timeout"
        assert proc.poll() == 7, "the waiter did not reap: Popen gets the status"
        waiter.wait(0.01)  # once exited, the pidfd is no longer polled (it would spin)
    finally:
        waiter.close()


def test_wake_cuts_the_sleep_short_from_another_thread_and_is_harmless_after_close(
        children: list[subprocess.Popen[bytes]]) -> None:
    proc = _spawn("import time; time.sleep(60)")
    children.append(proc)
    waiter = ExitWaiter(proc.pid)
    woke = threading.Event()

    def sleeper() -> None:
        waiter.wait(LONG_S)
        woke.set()

    thread = threading.Thread(target=sleeper)
    thread.start()
    waiter.wake()
    thread.join(LONG_S)
    assert woke.is_set() and not waiter.exited
    waiter.close()
    waiter.wake()  # a late stop() after the run: no write to a closed (or reused) descriptor
    waiter.close()


GRANDCHILD_FROM_A_THREAD = """
    import subprocess, sys, threading, time
    def start():
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    for _ in range(3):                      # several threads: the kernel lists children per thread
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    worker = threading.Thread(target=start)
    worker.start(); worker.join()
    print("ready", flush=True)
    time.sleep(60)
"""


def test_the_tree_is_walked_through_the_kernels_children_lists_never_all_of_proc(
        children: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _spawn(GRANDCHILD_FROM_A_THREAD)
    children.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    listed: list[str] = []
    real_listdir = os.listdir

    def spy(path: str) -> list[str]:
        listed.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(procfs.os, "listdir", spy)
    walk = ProcessTree(proc.pid)
    try:
        wait_until(lambda: len(walk.members()) == 2, 30, "the grandchild forked by a thread")
        sample = walk.sample()
        assert sample.processes == 2 and sample.memory_source == "pss" and sample.memory_bytes > 0
        assert "/proc" not in listed, "a running tree is never found by scanning /proc"
        assert f"/proc/{proc.pid}/task" in listed, "a multi-threaded member's threads are listed"
    finally:
        walk.close()


def test_pss_is_measured_once_per_member_then_followed_by_rss(children: list[subprocess.Popen[bytes]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _spawn("import time; print('ready', flush=True); time.sleep(60)")
    children.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    measured: list[int] = []
    real_read = pss.read_rollup

    def counting(pid: int) -> pss.Rollup | None:
        measured.append(pid)
        return real_read(pid)

    monkeypatch.setattr(pss, "read_rollup", counting)
    walk = ProcessTree(proc.pid, memory_limit=GiB)
    try:
        samples = [walk.sample() for _ in range(20)]
        assert measured == [proc.pid], "a steady one-process tree walks its address space once"
        assert all(s.memory_bytes > 0 and s.processes == 1 for s in samples)
    finally:
        walk.close()


def _sample(memory: int = 0, cpu: float = 0.0, processes: int = 1) -> TreeSample:
    return TreeSample(memory, cpu, processes)


def test_pacing_sleeps_long_while_limits_are_far_and_short_as_memory_nears_its_limit() -> None:
    configured = SandboxLimits(memory_bytes=256 * MiB, max_processes=256, output_bytes=GiB,
                               wall_seconds=3600, sample_interval_s=0.1)
    with_cgroup = Pacer(configured, kernel_memory=True, kernel_processes=True, exit_watched=True,
                        cgroup_lists_tree=True)
    assert with_cgroup.next_interval(0.0, 0.0, _sample(10 * MiB), 0) == FAR_INTERVAL_S
    assert with_cgroup.next_interval(1.0, 3599.9, _sample(10 * MiB), 0) == pytest.approx(0.105)

    alone = Pacer(configured, kernel_memory=False, kernel_processes=False, exit_watched=True,
                  cgroup_lists_tree=False)
    assert alone.next_interval(0.0, 0.0, _sample(10 * MiB), 0) <= configured.sample_interval_s
    far = alone.next_interval(1.0, 1.0, _sample(10 * MiB), 0)
    near = alone.next_interval(1.1, 1.1, _sample(250 * MiB), 0)  # grew 2.4 GiB/s meanwhile
    assert near == MIN_INTERVAL_S < far
    over = alone.next_interval(1.2, 1.2, _sample(300 * MiB), 0)
    assert over == MIN_INTERVAL_S


def test_without_an_exit_watch_the_configured_interval_bounds_the_sleep() -> None:
    configured = SandboxLimits(sample_interval_s=0.2)
    pacer = Pacer(configured, kernel_memory=True, kernel_processes=True, exit_watched=False,
                  cgroup_lists_tree=True)
    assert pacer.next_interval(0.0, 0.0, _sample(), 0) == 0.2


HOG_IGNORING_SIGTERM = """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    hold, stop = [], time.monotonic() + 20
    while time.monotonic() < stop and len(hold) < 40:   # hard stop: 320 MiB, 20 s
        hold.append(b"\\x01" * (8 * 2**20))
        time.sleep(0.02)
    time.sleep(max(0, stop - time.monotonic()))
"""


@WITH_AND_WITHOUT_CGROUP
def test_a_memory_breach_gets_sigkill_at_once_whatever_the_grace(run_sandbox: RunFactory,
                                                                  use_cgroup: bool) -> None:
    run_limits = limits(memory_bytes=64 * MiB, kill_grace_s=120.0)
    _, result = run_sandbox(py(HOG_IGNORING_SIGTERM), limits=run_limits, use_cgroup=use_cgroup)
    assert result.outcome == "limit" and result.breach is not None and result.breach.limit == "memory"
    assert result.signal == signal.SIGKILL, "dead within the fixture's deadline: no 120 s grace"
    assert result.peak_rss_bytes >= int(result.breach.measured) >= 64 * MiB
    if not use_cgroup:
        assert f"{result.breach.message}: SIGKILL to the process tree now" in result.log_text


@pytest.mark.skipif(not detect_cgroups().active, reason="no writable cgroup on this host")
def test_with_a_cgroup_its_own_list_names_the_members(children: list[subprocess.Popen[bytes]],
                                                      tmp_path: Path) -> None:
    """... and once they are gone, the tree holds nothing, whatever page cache the cgroup is
    still charged for."""
    group = TaskCgroup.create(detect_cgroups(), "watch-test", None, None)
    assert group is not None
    proc = _spawn(f"""
        import sys, time
        print('ready', flush=True)
        sys.stdin.readline()
        with open({str(tmp_path / "cached")!r}, "wb") as cached:
            cached.write(bytes(8 << 20))
        print('wrote', flush=True)
        time.sleep(60)
    """)
    children.append(proc)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        for directory in group.dirs:
            (directory / "cgroup.procs").write_text(str(proc.pid))
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"wrote\n"
        walk = ProcessTree(os.getpid() + 10**7, group)  # a root that is gone: only the cgroup knows
        try:
            assert walk.members() == {proc.pid}
            if group.memory_dir is not None:
                assert walk.sample().memory_bytes >= 8 << 20
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(LONG_S)
            wait_until(lambda: not group.procs(), LONG_S, "the cgroup to be empty")
            if group.memory_dir is not None:  # charged for its page cache still, held by no process
                after = walk.sample(exited=True)
                assert (after.memory_bytes, after.processes, after.memory_source) == (0, 0, "cgroup")
        finally:
            walk.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(LONG_S)
        assert group.remove()


def test_without_pidfds_the_exit_is_noticed_by_sampling(run_sandbox: RunFactory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel before 5.3 has no pidfd_open: the run still ends with the right status."""

    def no_pidfds(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open is not implemented")

    monkeypatch.setattr(waiter.os, "pidfd_open", no_pidfds)
    old_kernel = ExitWaiter(os.getpid())
    assert not old_kernel.exit_watched
    old_kernel.close()
    _, result = run_sandbox(py("import sys; print('done', flush=True); sys.exit(3)"))
    assert result.outcome == "exited" and result.exit_code == 3 and "done" in result.log_text


@pytest.mark.skipif(not detect_cgroups().active, reason="no writable cgroup here")
@pytest.mark.parametrize(("command", "disk_bytes"), [("exit 4", None), ("sleep 1; exit 4", MiB)],
                         ids=["no-disk-limit", "disk-limit"])
def test_a_recipe_that_exits_within_the_first_sleep_is_sampled_once(
        run_sandbox: RunFactory, monkeypatch: pytest.MonkeyPatch, command: str,
        disk_bytes: int | None) -> None:
    """The first sample waits for the first paced sleep (a recipe just forked holds nothing yet):
    one that exits before it is sampled once, after its exit, and its status is still right. A
    disk limit does not cut that sleep short: its first check is paced like the others
    (``DISK_CHECK_S`` after the start), not at 5 ms for a work dir that holds nothing yet.
    (The far sleep and the disk check are made a minute long so the exit always comes first.)"""
    taken: list[bool] = []
    sample = ProcessTree.sample

    def counted(self: ProcessTree, exited: bool = False) -> TreeSample:
        taken.append(exited)
        return sample(self, exited)

    monkeypatch.setattr(ProcessTree, "sample", counted)
    monkeypatch.setattr(pacing, "FAR_INTERVAL_S", LONG_S)
    monkeypatch.setattr(monitor, "DISK_CHECK_S", LONG_S)
    _, result = run_sandbox(["sh", "-c", command],
                            limits=SandboxLimits(kill_grace_s=2.0, disk_bytes=disk_bytes))
    assert result.outcome == "exited" and result.exit_code == 4
    assert taken == [True], "sampled before the exit"
