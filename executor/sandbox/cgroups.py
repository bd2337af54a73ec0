"""cgroup support: which version this host has, and one task's cgroup (create, read, remove).

Where the executor may create cgroups (root, or a delegated subtree), each run gets its own:
the kernel then enforces the memory and process limits with no overshoot, and the cgroup's
member list finds every process of the run, even one that left the session. Supported:

* **v1** (what many hosts still have): a child of the executor's own cgroup in the ``memory``
  and ``pids`` hierarchies, each used when present and writable;
* **v2**: a child of a delegated parent whose ``cgroup.subtree_control`` has ``memory`` and
  ``pids``. If the executor is alone in its cgroup it moves itself into a ``executor`` leaf
  and creates ``tasks/`` beside it (the layout systemd's ``Delegate=yes`` expects).

When neither works the monitor enforces limits alone; ``describe()`` says which.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from loguru import logger

from executor.sandbox.cgroup_parents import PARENT_NAME, make_under
from executor.sandbox.procfs import KeptFiles, read_all

_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class CgroupSupport:
    """Where task cgroups can be made; ``version == "none"`` when nowhere (``reason`` says why)."""

    version: Literal["v1", "v2", "none"]
    memory_parent: Path | None = None
    pids_parent: Path | None = None
    reason: str = ""

    @property
    def active(self) -> bool:
        """True when at least one controller can be used."""
        return self.memory_parent is not None or self.pids_parent is not None

    def describe(self) -> str:
        """One line for ``doctor``."""
        if not self.active:
            return f"none ({self.reason})" if self.reason else "none"
        controllers = [n for n, p in (("memory", self.memory_parent), ("pids", self.pids_parent)) if p]
        where = self.memory_parent or self.pids_parent
        return f"{self.version} ({', '.join(controllers)}) under {where}"


@dataclass(frozen=True)
class _Mount:
    fstype: str
    root: str
    point: Path
    options: frozenset[str]


def _mounts(proc_self: Path) -> list[_Mount]:
    mounts = []
    try:
        text = (proc_self / "mountinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(_Mount(tail[0], fields[3], Path(fields[4]), frozenset(tail[2].split(","))))
    return mounts


def _own_paths(proc_self: Path) -> dict[str, str]:
    """Controller (or ``""`` for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        text = (proc_self / "cgroup").read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _join(mount: _Mount, path: str) -> Path:
    relative = path[len(mount.root):] if mount.root != "/" and path.startswith(mount.root) else path
    return mount.point / relative.lstrip("/")


def detect_cgroups(proc_self: Path = Path("/proc/self"), prepare_v2: bool = False) -> CgroupSupport:
    """What this process may use. ``prepare_v2`` allows moving itself to set up a v2 subtree."""
    mounts, own = _mounts(proc_self), _own_paths(proc_self)
    v1: dict[str, Path] = {}
    for controller in ("memory", "pids"):
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is not None and controller in own:
            directory = _join(mount, own[controller])
            if os.access(directory, os.W_OK):
                v1[controller] = directory / PARENT_NAME
    if v1:
        return CgroupSupport("v1", v1.get("memory"), v1.get("pids"))
    unified = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if unified is None or "" not in own:
        reason = "cgroup v1 controllers not writable" if any(m.fstype == "cgroup" for m in mounts) else (
            "no cgroup filesystem")
        return CgroupSupport("none", reason=reason)
    return _detect_v2(_join(unified, own[""]), prepare_v2)


DETECT_CACHE_S = 60.0
"""How long one look at where task cgroups go serves the launches (a look reads /proc/self's
mount table: about a millisecond each launch would spend before its spawn)."""
_detected: tuple[float, CgroupSupport] | None = None


def cached_cgroups(max_age_s: float = DETECT_CACHE_S) -> CgroupSupport:
    """``detect_cgroups()`` looked up at most every ``max_age_s`` (a change of the host's
    cgroups, a remount or a delegation, is seen within that)."""
    global _detected
    found = _detected
    now = time.monotonic()
    if found is None or now - found[0] > max_age_s:
        found = _detected = (now, detect_cgroups())
    return found[1]


def _detect_v2(own_dir: Path, prepare: bool) -> CgroupSupport:
    wanted = {"memory", "pids"}
    tasks = own_dir.parent / "tasks" if own_dir.name == "executor" else own_dir / "tasks"
    if wanted <= _words(tasks / "cgroup.subtree_control") and os.access(tasks, os.W_OK):
        return CgroupSupport("v2", tasks, tasks)
    available = _words(own_dir / "cgroup.controllers")
    if not wanted <= available:
        return CgroupSupport("none", reason=f"cgroup v2 without memory and pids controllers in {own_dir}")
    if not os.access(own_dir, os.W_OK):
        return CgroupSupport("none", reason=f"cgroup v2 subtree {own_dir} is not delegated (not writable)")
    if not prepare:
        reason = f"cgroup v2 usable once the executor moves into {own_dir}/executor"
        return CgroupSupport("none", reason=reason)
    try:
        return _prepare_v2(own_dir)
    except OSError as exc:
        return CgroupSupport("none", reason=f"cgroup v2 set-up in {own_dir} failed: {exc.strerror}")


def _prepare_v2(own_dir: Path) -> CgroupSupport:
    """Move this process into ``own_dir/executor`` and enable memory+pids for ``own_dir/tasks``."""
    members = _words(own_dir / "cgroup.procs")
    if members - {str(os.getpid())}:
        return CgroupSupport("none", reason=f"cgroup v2: other processes share {own_dir}; cannot delegate")
    leaf, tasks = own_dir / "executor", own_dir / "tasks"
    leaf.mkdir(exist_ok=True)
    (leaf / "cgroup.procs").write_text(str(os.getpid()))
    (own_dir / "cgroup.subtree_control").write_text("+memory +pids")
    tasks.mkdir(exist_ok=True)
    (tasks / "cgroup.subtree_control").write_text("+memory +pids")
    logger.info("cgroup v2: moved the executor into {} and enabled memory, pids for {}", leaf, tasks)
    return CgroupSupport("v2", tasks, tasks)


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


class TaskCgroup:
    """The cgroup(s) of one run. The launcher joins ``dirs``; the monitor reads the rest."""

    def __init__(self, version: str, memory_dir: Path | None, pids_dir: Path | None) -> None:
        self.version = version
        self.memory_dir = memory_dir
        self.pids_dir = pids_dir
        self.dirs: tuple[Path, ...] = tuple(dict.fromkeys(d for d in (memory_dir, pids_dir) if d))
        self._files = KeptFiles(limit=8)  # the monitor re-reads the same few files all run long

    @classmethod
    def create(cls, support: CgroupSupport, name: str, memory_bytes: int | None,
               max_processes: int | None) -> TaskCgroup | None:
        """A new cgroup named after ``name`` with the limits set, or None when that fails."""
        if not support.active:
            return None
        leaf = f"{_NAME_OK.sub('_', name)[:60]}-p{os.getpid()}-{os.urandom(3).hex()}"
        made: list[Path] = []
        try:
            memory_dir = make_under(support.memory_parent, leaf, made)
            pids_dir = memory_dir if support.version == "v2" else make_under(support.pids_parent, leaf, made)
            group = cls(support.version, memory_dir, pids_dir)
            group._set_limits(memory_bytes, max_processes)
            return group
        except OSError as exc:
            logger.warning("cannot create a cgroup for {} ({}); the monitor alone enforces limits",
                           name, exc.strerror)
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            return None

    def _set_limits(self, memory_bytes: int | None, max_processes: int | None) -> None:
        v2 = self.version == "v2"
        if self.memory_dir is not None and memory_bytes is not None:
            limit_file = "memory.max" if v2 else "memory.limit_in_bytes"
            _write(self.memory_dir / limit_file, memory_bytes)
            swap = "memory.swap.max" if v2 else "memory.memsw.limit_in_bytes"
            with contextlib.suppress(OSError):  # no swap accounting on this kernel: nothing to limit
                _write(self.memory_dir / swap, 0 if v2 else memory_bytes)
            if v2:
                with contextlib.suppress(OSError):
                    _write(self.memory_dir / "memory.oom.group", 1)
        if self.pids_dir is not None and max_processes is not None:
            _write(self.pids_dir / "pids.max", max_processes)

    def pids(self) -> set[int]:
        """Every process in the cgroup now (in any of its hierarchies)."""
        found: set[int] = set()
        for directory in self.dirs:
            found.update(_members(directory))
        return found

    def procs(self) -> set[int]:
        """The processes of the run, for the monitor: one hierarchy's list is enough, as the
        exec wrapper joins every hierarchy before anything else runs (and fails if it cannot).

        Opened afresh each time: v1 builds the list when the file is opened and a kept
        descriptor would go on showing that stale list.
        """
        return _members(self.dirs[0]) if self.dirs else set()

    def _read(self, path: Path) -> bytes | None:
        try:
            return self._files.read(str(path))
        except OSError:
            return None

    def _kept_counter(self, path: Path, key: bytes) -> int:
        raw = self._read(path) or b""
        for line in raw.splitlines():
            name, _, value = line.partition(b" ")
            if name == key and value.strip().isdigit():
                return int(value)
        return 0

    def oom_kills(self) -> int:
        """How many processes the kernel killed for reaching the memory limit."""
        if self.memory_dir is None:
            return 0
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        return self._kept_counter(self.memory_dir / name, b"oom_kill")

    def fork_refusals(self) -> int:
        """How many forks ``pids.max`` refused."""
        return 0 if self.pids_dir is None else self._kept_counter(self.pids_dir / "pids.events", b"max")

    def memory_usage(self) -> int | None:
        """The memory the kernel charges to the cgroup now (each page once), when it keeps a count.

        This is the figure the kernel compares with the limit; a forked tree's shared pages
        count once here, where a sum of the members' RSS counts them once per process.
        """
        if self.memory_dir is None:
            return None
        name = "memory.current" if self.version == "v2" else "memory.usage_in_bytes"
        raw = self._read(self.memory_dir / name)
        return int(raw) if raw is not None and raw.strip().isdigit() else None

    def cpu_seconds(self) -> float | None:
        """CPU time of everything the cgroup ever ran, gone processes included (v2's ``cpu.stat``
        exists whether or not the cpu controller is enabled; v1 has no such count here)."""
        if self.version != "v2" or self.memory_dir is None:
            return None
        usec = self._kept_counter(self.memory_dir / "cpu.stat", b"usage_usec")
        return usec / 1e6 if usec else None

    def peak_memory(self) -> int | None:
        """The kernel's peak memory usage of the cgroup, when it keeps one."""
        if self.memory_dir is None:
            return None
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        raw = self._read(self.memory_dir / name)
        return int(raw) if raw is not None and raw.strip().isdigit() else None

    def kill_all(self) -> None:
        """SIGKILL every member (``cgroup.kill`` on v2 when the kernel has it)."""
        if self.version == "v2" and self.memory_dir is not None:
            with contextlib.suppress(OSError):
                (self.memory_dir / "cgroup.kill").write_text("1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout_s: float = 2.0) -> bool:
        """Remove the cgroup once empty (a dying process may still be listed for a moment). The
        shared parent stays for the next run (``cgroup_parents``)."""
        self._files.close()
        deadline = time.monotonic() + timeout_s
        remaining = list(self.dirs)
        while remaining:
            for directory in list(remaining):
                try:
                    directory.rmdir()
                    remaining.remove(directory)
                except FileNotFoundError:
                    remaining.remove(directory)
                except OSError:
                    pass
            if remaining and time.monotonic() > deadline:
                logger.warning("cgroup {} still busy; left behind", remaining[0])
                return False
            if remaining:
                time.sleep(0.01)  # the kernel frees a killed task's cgroup membership asynchronously
        return True


def _write(path: Path, value: int) -> None:
    """One control file's value: a single write, no text layer."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _members(directory: Path) -> set[int]:
    """The pids ``cgroup.procs`` lists now (opened afresh: v1 builds the list at open)."""
    try:
        fd = os.open(directory / "cgroup.procs", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return set()
    try:
        return {int(w) for w in read_all(fd).split() if w.isdigit()}
    except OSError:
        return set()
    finally:
        os.close(fd)
