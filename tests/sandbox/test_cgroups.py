"""cgroup detection on fake /proc and /sys trees (v1, v2 delegated, v2 not, none), and a real task cgroup."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from executor.sandbox import enforcement_mechanism, sandbox_capabilities
from executor.sandbox.cgroup_parents import release_parents
from executor.sandbox.cgroups import CgroupSupport, TaskCgroup, detect_cgroups
from executor.sandbox.orphans import reap_orphans

V1_MOUNTS = """\
30 25 0:26 / {root}/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
31 25 0:27 / {root}/pids rw,nosuid shared:10 - cgroup cgroup rw,pids
32 25 0:28 / {root}/cpu rw,nosuid shared:11 - cgroup cgroup rw,cpu
"""
V2_MOUNT = "40 25 0:30 / {root} rw,nosuid shared:12 - cgroup2 cgroup2 rw\n"


def fake_proc(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc = tmp_path / "proc-self"
    proc.mkdir()
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    return proc


def test_v1_uses_the_memory_and_pids_hierarchies_under_our_own_cgroup(tmp_path: Path) -> None:
    sys_root = tmp_path / "sys"
    (sys_root / "memory" / "svc").mkdir(parents=True)
    (sys_root / "pids").mkdir(parents=True)
    proc = fake_proc(tmp_path, V1_MOUNTS.format(root=sys_root), "4:memory:/svc\n3:pids:/\n1:cpu:/\n0::/\n")
    support = detect_cgroups(proc)
    assert support == CgroupSupport("v1", sys_root / "memory" / "svc" / "remote-executor",
                                    sys_root / "pids" / "remote-executor")
    assert support.describe().startswith("v1 (memory, pids)")
    assert enforcement_mechanism(support) == "cgroup-v1+psutil"


def test_v2_with_a_delegated_tasks_subtree_is_used(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    tasks = unified / "svc" / "tasks"
    tasks.mkdir(parents=True)
    (unified / "svc" / "executor").mkdir()
    (tasks / "cgroup.subtree_control").write_text("memory pids\n")
    proc = fake_proc(tmp_path, V2_MOUNT.format(root=unified), "0::/svc/executor\n")
    assert detect_cgroups(proc) == CgroupSupport("v2", tasks, tasks)


def test_v2_without_controllers_or_delegation_falls_back_with_a_reason(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    (unified / "svc").mkdir(parents=True)
    (unified / "svc" / "cgroup.controllers").write_text("cpu io\n")
    proc = fake_proc(tmp_path, V2_MOUNT.format(root=unified), "0::/svc\n")
    support = detect_cgroups(proc)
    assert not support.active and "without memory and pids" in support.reason
    (unified / "svc" / "cgroup.controllers").write_text("cpu io memory pids\n")
    support = detect_cgroups(proc)
    assert not support.active and "once the executor moves" in support.reason
    assert enforcement_mechanism(support) == "psutil"


def test_no_cgroup_filesystem(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "22 1 0:21 / /proc rw - proc proc rw\n", "")
    support = detect_cgroups(proc)
    assert support.describe() == "none (no cgroup filesystem)"
    capabilities = sandbox_capabilities(support)
    assert capabilities["mechanism"] == "psutil" and capabilities["memory"].startswith("psutil")


def test_capabilities_name_every_mechanism() -> None:
    capabilities = sandbox_capabilities()
    for key in ("mechanism", "cgroup", "memory", "processes", "rlimits", "pdeathsig", "bwrap"):
        assert capabilities[key]
    assert capabilities["pdeathsig"].startswith("yes")


@pytest.mark.skipif(not detect_cgroups().active, reason="no writable cgroup on this host")
def test_a_real_task_cgroup_holds_its_limits_and_is_removed() -> None:
    support = detect_cgroups()
    group = TaskCgroup.create(support, "unit/test task", 64 * 2**20, 8)
    assert group is not None
    try:
        for directory in group.dirs:
            assert directory.is_dir() and "unit_test_task-p" in directory.name
        if group.memory_dir is not None and group.version == "v1":
            assert int((group.memory_dir / "memory.limit_in_bytes").read_text()) == 64 * 2**20
        if group.pids_dir is not None:
            assert (group.pids_dir / "pids.max").read_text().strip() == "8"
        assert group.pids() == set() and group.oom_kills() == 0 and group.fork_refusals() == 0
    finally:
        assert group.remove()
    assert not any(d.exists() for d in group.dirs)


@pytest.fixture
def own_parents() -> Iterator[CgroupSupport]:
    """Real cgroup support whose shared parents lie under a directory of this test's own (beside
    the host-wide ones, which other processes' runs may keep alive), made absent."""
    support = detect_cgroups()
    if not support.active:
        pytest.skip("no writable cgroup on this host")
    bases: dict[Path, Path] = {}
    for name in ("memory_parent", "pids_parent"):
        shared = getattr(support, name)
        if shared is not None and shared not in bases:
            bases[shared] = shared.parent / f"test-keep-{os.getpid()}"
            bases[shared].mkdir()
    try:
        yield replace(support, **{name: bases[getattr(support, name)] / "remote-executor"
                                  for name in ("memory_parent", "pids_parent") if getattr(support, name)})
    finally:
        for base in bases.values():
            for directory in (base / "remote-executor", base):
                if directory.exists():
                    directory.rmdir()


def _parents(support: CgroupSupport) -> set[Path]:
    return {p for p in (support.memory_parent, support.pids_parent) if p is not None}


def test_the_shared_parent_outlives_its_task_cgroups_until_released(own_parents: CgroupSupport) -> None:
    """A run pays its own cgroup's mkdir and rmdir, not its parent's: the parent is made by the
    first run, kept after each, and removed when the process lets go of it (at exit)."""
    for name in ("first", "second"):
        group = TaskCgroup.create(own_parents, name, 64 * 2**20, 8)
        assert group is not None and all(d.parent in _parents(own_parents) for d in group.dirs)
        assert group.remove()
        assert not any(d.exists() for d in group.dirs)
        assert all(p.is_dir() for p in _parents(own_parents)), "the parent went with its last task cgroup"
    release_parents()
    assert not any(p.exists() for p in _parents(own_parents))


def test_the_parent_goes_when_the_process_that_kept_it_exits(own_parents: CgroupSupport) -> None:
    memory, pids = (str(p) if p else None for p in (own_parents.memory_parent, own_parents.pids_parent))
    child = f"""
from pathlib import Path
from executor.sandbox.cgroups import CgroupSupport, TaskCgroup
memory, pids = {memory!r}, {pids!r}
support = CgroupSupport({own_parents.version!r}, memory and Path(memory), pids and Path(pids))
group = TaskCgroup.create(support, "exit-test", None, 8)
assert group is not None and group.remove()
assert all(d.parent.is_dir() for d in group.dirs), "kept while the process lives"
"""
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    assert not any(p.exists() for p in _parents(own_parents))


def test_a_parent_a_crashed_executor_left_empty_is_removed_at_start_up(own_parents: CgroupSupport) -> None:
    for parent in _parents(own_parents):
        parent.mkdir()
    reap_orphans(own_parents)
    assert not any(p.exists() for p in _parents(own_parents))


def test_v2s_delegated_tasks_subtree_outlives_the_sweep_and_the_release(tmp_path: Path) -> None:
    """v2's parent is the delegated ``tasks`` (its controllers enabled once, at set-up): neither
    the start-up sweep nor the release at exit removes it, as they remove v1's own parent."""
    tasks = tmp_path / "unified" / "svc" / "tasks"
    tasks.mkdir(parents=True)
    support = CgroupSupport("v2", tasks, tasks)
    reap_orphans(support)
    assert tasks.is_dir(), "the start-up sweep removed the delegated subtree"
    group = TaskCgroup.create(support, "v2-run", None, None)  # a fake tree: no limit files to write
    assert group is not None and group.dirs == (group.memory_dir,) and group.remove()
    release_parents()
    assert tasks.is_dir(), "the release at exit removed the delegated subtree"


def test_a_missing_v2_tasks_subtree_is_not_made_again(tmp_path: Path) -> None:
    """A plain mkdir would make ``tasks`` without controllers (its task cgroups without
    ``memory.max``): the run falls back to the monitor instead, and ``tasks`` stays absent."""
    tasks = tmp_path / "unified" / "svc" / "tasks"
    tasks.parent.mkdir(parents=True)
    assert TaskCgroup.create(CgroupSupport("v2", tasks, tasks), "v2-run", None, None) is None
    assert not tasks.exists()


def test_v1s_own_parent_is_made_when_missing(tmp_path: Path) -> None:
    """v1's ``remote-executor`` parent is the executor's own: the first run makes it."""
    memory, pids = (tmp_path / name / "svc" / "remote-executor" for name in ("memory", "pids"))
    for parent in (memory, pids):
        parent.parent.mkdir(parents=True)
    group = TaskCgroup.create(CgroupSupport("v1", memory, pids), "v1-run", None, None)
    assert group is not None and memory.is_dir() and pids.is_dir()
    assert group.remove()
    release_parents()
    assert not memory.exists() and not pids.exists()
