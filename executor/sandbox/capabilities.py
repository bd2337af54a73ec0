"""What the sandbox can enforce on this host, for ``doctor`` and the start-up log.

``enforcement_mechanism()`` names the active layers in one word list (``cgroup-v1+psutil``,
``psutil``); ``sandbox_capabilities()`` gives one line per mechanism.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys

from executor.sandbox.cgroups import CgroupSupport, detect_cgroups


def enforcement_mechanism(support: CgroupSupport | None = None) -> str:
    """``cgroup-v1+psutil``, ``cgroup-v2+psutil`` or ``psutil``: what enforces memory and process limits."""
    support = support if support is not None else detect_cgroups()
    return f"cgroup-{support.version}+psutil" if support.active else "psutil"


def _pdeathsig() -> str:
    if not sys.platform.startswith("linux"):
        return "unavailable (not Linux): a recipe may outlive a killed executor"
    try:
        ctypes.CDLL(None).prctl  # noqa: B018 (presence check)
    except (OSError, AttributeError):
        return "unavailable (no prctl in libc)"
    return "yes (prctl PR_SET_PDEATHSIG=SIGKILL in the exec wrapper)"


def sandbox_capabilities(support: CgroupSupport | None = None) -> dict[str, str]:
    """One line per mechanism: cgroup, memory/process enforcement, rlimits, pdeathsig, bwrap."""
    support = support if support is not None else detect_cgroups()
    cgroup = support.describe()
    memory = "psutil monitor (tree PSS, sampled)"
    processes = "psutil monitor (tree count, sampled)"
    if support.memory_parent is not None:
        memory = f"cgroup {support.version} memory limit (no overshoot) + {memory}"
    if support.pids_parent is not None:
        processes = f"cgroup {support.version} pids.max (no overshoot) + {processes}"
    bwrap = shutil.which("bwrap")
    return {
        "mechanism": enforcement_mechanism(support),
        "cgroup": cgroup,
        "memory": memory,
        "processes": processes,
        "cpu_wall_output_disk": "psutil monitor + RLIMIT_CPU/RLIMIT_FSIZE backstops",
        "rlimits": "RLIMIT_NOFILE, RLIMIT_CORE=0, optional RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE",
        "pdeathsig": _pdeathsig(),
        "isolation": "new session and process group, private 0700 work dir, allowlisted environment",
        "bwrap": f"installed at {bwrap} (isolation: bwrap available)" if bwrap else "not installed",
        "user": "root" if os.geteuid() == 0 else f"uid {os.geteuid()} (cgroups need root or delegation)",
    }
