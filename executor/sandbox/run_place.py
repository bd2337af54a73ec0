"""Where one sandboxed run lives on the host: its private work dir and its task cgroup.

``SandboxRun`` (``sandbox.run``) makes the place before the spawn (``make``), reads the report
back from it once the tree is gone (``read_report``) and removes it after the result is known
(``clean_up``, in two steps: a few syscalls before the result's hand-over, the rest after it).
Left by a killed executor, both are found by the start-up sweeps (``workdir.sweep_work_dirs``,
``orphans``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from executor.sandbox.cgroups import CgroupSupport, TaskCgroup, cached_cgroups
from executor.sandbox.identity import grant_work_dir
from executor.sandbox.limits import MiB
from executor.sandbox.log_retention import forget_log
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

    def clean_up(self, spec: SandboxSpec, input_given: bool, reaped: Callable[[], None] | None,
                 quick: bool = False) -> bool:
        """Remove the work dir and the cgroup, then call ``reaped`` (the spawn server's count of
        its children: told in any case, or a server that counts a child forever never idles
        out). ``quick``: False, the rest left for a call without it, when the work dir needs a
        walk (``remove``); ``input_given`` False on a held spec: nothing ran, its log goes."""
        finished = not quick
        try:
            if spec.hold_input and not input_given and spec.log_file is not None:
                spec.log_file.unlink(missing_ok=True)  # never given its input: nothing ran, no log
                forget_log(spec.log_file)  # so it does not push a real log out
            finished = self.remove(deep=not quick) or finished
        except Exception:  # left for the start-up sweeps; the run's end must still be told
            finished = True
            logger.exception("clean-up of sandbox {} incomplete", spec.task_id)
        except BaseException:
            finished = True  # told in any case, as above
            raise
        finally:
            if finished and reaped is not None:
                reaped()
        return finished
