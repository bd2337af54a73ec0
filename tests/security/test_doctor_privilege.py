"""``doctor`` says who recipes run as, and what a recipe could reach where that is the executor.

Root with ``run_as`` passes; a missing user fails with its fix; root without ``run_as`` warns;
a non-root executor (a throwaway user, as in a container at a fixed uid) without bwrap warns
and says exactly what a recipe can and cannot reach, and what to do.
"""

from __future__ import annotations

import json
import subprocess
import sys

from executor.config import PoolSettings, RunAsSettings
from executor.observability.doctor import Status
from executor.observability.doctor_privilege import _pool_check, privilege_checks
from tests.security.privilege_world import ROOT, Users, throwaway_users

__all__ = ["throwaway_users"]

AS_OTHER_USER = """
import json
from executor.config import ExecutorConfig
from executor.observability.doctor_privilege import privilege_checks
config = ExecutorConfig.model_validate({"gms": {"url": "http://127.0.0.1:1"}, "pools": [{"id": "p"}]})
print(json.dumps([[c.name, c.status.value, c.detail, c.fix] for c in privilege_checks(config)]))
"""


def test_root_with_run_as_passes_and_a_missing_user_fails(throwaway_users: Users) -> None:
    good = _pool_check(PoolSettings(id="p", run_as=RunAsSettings(user=throwaway_users.recipe.name)))
    assert good.status is Status.PASS and throwaway_users.recipe.name in good.detail
    assert "add isolation: bwrap" in good.detail  # the pool's tasks share that uid
    bad = _pool_check(PoolSettings(id="p", run_as=RunAsSettings(user="no-such-user-here")))
    assert bad.status is Status.FAIL and "does not exist" in bad.detail and "useradd" in bad.fix


def test_root_without_run_as_warns() -> None:
    check = _pool_check(PoolSettings(id="p"))
    assert check.status is Status.WARN and "root" in check.detail and "run_as" in check.fix


def test_a_non_root_executor_without_bwrap_is_told_what_a_recipe_can_reach(throwaway_users: Users) -> None:
    user = throwaway_users.executor
    out = subprocess.run(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--",
                          sys.executable, "-c", AS_OTHER_USER], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    checks = {name: (status, detail, fix) for name, status, detail, fix in json.loads(out)}
    assert checks["executor not dumpable"][0] == "PASS"
    status, detail, fix = checks["recipe identity [p]"]
    assert status == "WARN" and f"uid {user.uid}" in detail
    assert "can read the config file" in detail and "cannot read the executor's memory" in detail
    assert "CAP_SETUID" in fix and "isolation: bwrap" in fix


def test_every_pool_gets_a_line() -> None:
    from executor.config import ExecutorConfig

    config = ExecutorConfig.model_validate({"gms": {"url": "http://127.0.0.1:1"},
                                            "pools": [{"id": "a"}, {"id": "b", "isolation": "bwrap"}]})
    names = [c.name for c in privilege_checks(config)]
    assert names == ["executor not dumpable", "recipe identity [a]", "venv builds [a]", "recipe identity [b]",
                     "venv builds [b]"]


def test_doctor_says_who_runs_pip_for_a_dynamic_venv() -> None:
    from executor.config import VenvSettings
    from executor.observability.doctor_privilege import _venv_build_check

    plain = _venv_build_check(PoolSettings(id="p"))
    assert plain.status is Status.WARN and "as the executor" in plain.detail and "run_as" in plain.fix
    built_as = _venv_build_check(PoolSettings(id="p", run_as=RunAsSettings(user="someone")))
    assert built_as.status is Status.PASS and "as someone" in built_as.detail
    locked = _venv_build_check(PoolSettings(id="p", venvs=VenvSettings(dependency_resolution=False)))
    assert locked.status is Status.PASS and "pip never runs" in locked.detail
