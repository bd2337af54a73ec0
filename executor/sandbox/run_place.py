"""Where one sandboxed run lives on the host: its private work dir and its task cgroup.

``SandboxRun`` (``sandbox.run``) makes the place before the spawn (``make``), reads the report
back from it once the tree is gone (``read_report``) and removes it after the result is known
(``remove``). Left by a killed executor, both are found by the start-up sweeps
(``workdir.sweep_work_dirs``, ``orphans``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from executor.sandbox.cgroups import CgroupSupport, TaskCgroup, cached_cgroups
from executor.sandbox.identity import grant_work_dir
from executor.sandbox.limits import MiB
from executor.sandbox.readback import read_report
from executor.sandbox.spec import SandboxSpec
from executor.sandbox.workdir import create_work_dir, remove_work_dir

REPORT_MAX_BYTES = 15 * MiB
"""DataHub caps a whole result near 15 M characters; a larger report is left out."""


@dataclass
class RunPlace:
    """One run's work dir and cgroup, each None until made (or when the spec wants none)."""

    work_dir: Path | None = None
    cgroup: TaskCgroup | None = None

    def make(self, spec: SandboxSpec, cgroups: CgroupSupport | None) -> None:
        """The private work dir (the recipe user's with ``run_as``) and, with ``use_cgroup``, the
        task cgroup with the spec's memory and process limits (``cgroups``: the cached support)."""
        self.work_dir = create_work_dir(spec.work_root, spec.task_id)
        if spec.run_as is not None:
            grant_work_dir(self.work_dir, spec.run_as)
        if spec.use_cgroup:
            support = cgroups if cgroups is not None else cached_cgroups()
            limits = spec.limits
            self.cgroup = TaskCgroup.create(support, spec.task_id, limits.memory_bytes, limits.max_processes)

    def read_report(self, spec: SandboxSpec, mask: Callable[[str], str],
                    note: Callable[[str], None]) -> str | None:
        """The masked report file, read without following links or blocking (``readback``)."""
        if not spec.report_file or self.work_dir is None:
            return None
        return read_report(self.work_dir, spec.report_file, REPORT_MAX_BYTES, mask, note)

    def remove(self, deep: bool = True) -> bool:
        """Remove the work dir, then the cgroup (raises: the sweeps then remove what is left).
        Without ``deep``: False, and the cgroup left, when the work dir needs ``rmtree``'s walk
        (``remove_work_dir``); a later call with it removes both."""
        if self.work_dir is not None and not remove_work_dir(self.work_dir, deep=deep) and not deep:
            return False
        if self.cgroup is not None:
            self.cgroup.remove()
        return True
