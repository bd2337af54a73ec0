"""``doctor``'s lines on the trust boundary: can a recipe reach the executor's secrets here?

One line for the executor's non-dumpability, then two per pool: who its recipes run as, and,
when that is the executor's own uid without bwrap, exactly what a hostile recipe could reach
and what the operator can do (docs/security.md, "What the operator must do"); and who runs
pip when it builds a dynamic venv (a requested package's build code runs as that user).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from executor.config import ExecutorConfig, PoolSettings
from executor.errors import ConfigError
from executor.observability.doctor import Check, failed, passed, warned

RUN_AS_FIX = ("start the executor as root with only CAP_SETUID, CAP_SETGID, CAP_KILL, CAP_CHOWN and "
              "CAP_DAC_OVERRIDE (the shipped systemd unit, image and chart show how) and set the pool's "
              "run_as; where that is impossible (a container at a fixed non-root uid), set isolation: bwrap")
SHARED_UID = " (concurrent tasks of this pool share the uid and can see each other: add isolation: bwrap)"
SAME_UID = ("recipes run as the executor's own uid {uid} without bwrap: a hostile recipe can read the config "
            "file, the state dir (other tasks' logs and work dirs, the outbox), a gms.token_file and the "
            "secrets mount, and delete pending results; it cannot read the executor's memory, environment "
            "or token (not dumpable) nor forge a result (the outbox MAC needs the token)")


def privilege_checks(config: ExecutorConfig) -> Iterator[Check]:
    """Non-dumpable, then each pool's recipe identity."""
    yield _dumpable_check()
    for pool in config.pools:
        yield _pool_check(pool)
        yield _venv_build_check(pool)


def _venv_build_check(pool: PoolSettings) -> Check:
    name = f"venv builds [{pool.id}]"
    if not pool.venvs.dependency_resolution:
        return passed(name, "locked: only bundled venvs run, pip never runs for a request")
    if pool.run_as is not None:
        return passed(name, f"dynamic venvs are built by pip as {pool.run_as.user}, with the recipe's "
                            "environment, then made read-only")
    return warned(name, f"dynamic venvs are built by pip as the executor (uid {os.geteuid()}): a requested "
                        "package's build code runs with the executor's privileges and can read what it can "
                        "(its state dir, config, token file; not its environment: pip gets none of its "
                        "credentials)",
                  "set the pool's run_as (builds then run as the recipe user), or "
                  "venvs.dependency_resolution: false (bundled venvs only)")


def _dumpable_check() -> Check:
    from executor.hardening import make_undumpable

    name = "executor not dumpable"
    if make_undumpable():  # the same call ``run`` makes first; harmless in ``doctor``
        return passed(name, "prctl(PR_SET_DUMPABLE, 0) works: a same-uid recipe cannot read the "
                            "executor's /proc/<pid>/environ, mem or fd")
    return warned(name, "prctl(PR_SET_DUMPABLE) is unavailable here", "run on Linux")


def _pool_check(pool: PoolSettings) -> Check:
    from executor.sandbox.identity import resolve_run_as, switch_support

    name = f"recipe identity [{pool.id}]"
    bwrap = pool.isolation == "bwrap" and shutil.which("bwrap") is not None
    if pool.run_as is not None:
        try:
            user = resolve_run_as(pool.run_as.user, pool.run_as.group, f"pools[{pool.id}].run_as")
        except ConfigError as exc:
            return failed(name, str(exc), "create the user (useradd --system) or fix run_as")
        able, why = switch_support()
        if not able:
            return failed(name, f"run_as {user.name} needs privileges this executor lacks ({why})",
                          RUN_AS_FIX)
        extra = " under bwrap" if bwrap else SHARED_UID
        return passed(name, f"recipes run as {user.name} (uid {user.uid}, gid {user.gid}){extra}")
    if os.geteuid() == 0:
        return warned(name, "recipes run as root" + (" inside bwrap" if bwrap else ""), RUN_AS_FIX)
    if bwrap:
        return passed(name, f"recipes run as the executor's uid {os.geteuid()} inside bwrap: they see only "
                            "their own work dir, the venv and the system trees")
    able, _ = switch_support()
    fix = "set the pool's run_as" if able else RUN_AS_FIX
    return warned(name, SAME_UID.format(uid=os.geteuid()), fix)
