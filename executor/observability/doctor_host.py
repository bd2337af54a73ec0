"""``doctor``'s local checks: the state directory and what the sandbox can enforce here.

The sandbox lines come from ``executor.sandbox.sandbox_capabilities``: kernel-enforced memory
and process limits (cgroup v1/v2) or only the sampled psutil monitor, rlimits, the
parent-death signal, and bubblewrap, which a pool with ``isolation: bwrap`` requires.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from executor.config import ExecutorConfig
from executor.observability.doctor import Check, failed, passed, warned

CGROUP_FIX = (
    "for hard limits run as root with a writable cgroup hierarchy, or delegate a cgroup v2 "
    "subtree (systemd: Delegate=yes, ProtectControlGroups=no)"
)


def host_checks(config: ExecutorConfig) -> Iterator[Check]:
    """State directory, then the sandbox mechanisms, then who recipes run as."""
    from executor.observability.doctor_privilege import privilege_checks

    yield state_dir_check(config.state_dir)
    yield from sandbox_checks(config)
    yield from privilege_checks(config)


def state_dir_check(state_dir: Path) -> Check:
    """The outbox, logs and work dirs live here: it must exist and be writable, or be creatable."""
    name = "state dir"
    fix = f"create it for the service user: install -d -m 0700 -o <user> {state_dir}"
    if state_dir.exists():
        if not state_dir.is_dir():
            return failed(name, f"{state_dir} is not a directory", fix)
        if not os.access(state_dir, os.W_OK | os.X_OK):
            return failed(name, f"{state_dir} is not writable by uid {os.geteuid()}", fix)
        return passed(name, f"{state_dir} is writable")
    parent = next((p for p in state_dir.parents if p.exists()), Path("/"))
    if os.access(parent, os.W_OK | os.X_OK):
        return passed(name, f"{state_dir} does not exist yet; the service will create it under {parent}")
    return failed(name, f"{state_dir} does not exist and {parent} is not writable", fix)


def sandbox_checks(config: ExecutorConfig) -> Iterator[Check]:
    """One line each: hard limits, rlimits, parent-death signal, bubblewrap."""
    from executor.sandbox import sandbox_capabilities

    caps = sandbox_capabilities()
    mechanism = caps["mechanism"]
    if mechanism.startswith("cgroup"):
        yield passed("sandbox limits", f"{mechanism}: cgroup {caps['cgroup']}")
    else:
        yield warned(
            "sandbox limits",
            f"{mechanism} only (cgroup: {caps['cgroup']}): memory and process limits are sampled, "
            "a fast-growing recipe can overshoot before it is stopped",
            CGROUP_FIX,
        )
    yield passed("sandbox rlimits", caps["rlimits"])
    pdeathsig = caps["pdeathsig"]
    if pdeathsig.startswith("yes"):
        yield passed("parent-death signal", pdeathsig)
    else:
        yield warned("parent-death signal", pdeathsig, "run on Linux so recipes die with a killed executor")
    bwrap_pools = [p.id for p in config.pools if p.isolation == "bwrap"]
    if caps["bwrap"].startswith("installed"):
        yield passed("bwrap", caps["bwrap"])
    elif bwrap_pools:
        yield failed("bwrap", f"not installed, but pool(s) {', '.join(bwrap_pools)} use isolation: bwrap",
                     "install bubblewrap (apt-get install bubblewrap) or set isolation: process")
    else:
        yield passed("bwrap", "not installed (only pools with isolation: bwrap need it)")
