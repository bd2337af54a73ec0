"""``run_as``: the recipe really is another, powerless user, and the executor still controls it.

Runs ``SandboxRun`` directly (as the Task does) with a throwaway user: the recipe reports its
ids, groups, capabilities, ``no_new_privs`` and whether uid 0 comes back; its work dir is its
own (0700) and the executor's state is not; a stop kills its whole tree, grandchild included,
and the work dir is removed afterwards although the recipe made it unreadable.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from executor.errors import ConfigError
from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec, build_env
from executor.sandbox.identity import RunAs, prepare_work_root, resolve_run_as, switch_support
from tests.security.privilege_world import Users, throwaway_users, wait_until

__all__ = ["throwaway_users"]

PROBE = textwrap.dedent("""
    import json, os
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    try:
        os.listdir({state!r})
        state = "readable"
    except OSError as exc:
        state = exc.strerror
    print("PROBE " + json.dumps({{
        "ids": [os.getresuid(), os.getresgid()], "groups": os.getgroups(), "regained": regained,
        "cap_eff": status["CapEff"].strip(), "cap_amb": status["CapAmb"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(), "state": state,
        "cwd_owner": os.stat(".").st_uid, "cwd_mode": oct(os.stat(".").st_mode & 0o777),
    }}), flush=True)
""")


@pytest.fixture
def roots(throwaway_users: Users) -> Iterator[tuple[Path, Path]]:
    """A 0700 state dir, and a work root the recipe user can pass through (outside it)."""
    base = Path(tempfile.mkdtemp(prefix="resec-runas-"))
    base.chmod(0o711)
    state = base / "state"
    state.mkdir(mode=0o700)
    (state / "outbox.key").write_text("executor only")
    yield state, prepare_work_root(base / "work", "default")
    import shutil

    shutil.rmtree(base, ignore_errors=True)


def run(argv: list[str], work_root: Path, user: RunAs, **extra: object) -> SandboxRun:
    spec = SandboxSpec(argv=argv, work_root=work_root, run_as=user, use_cgroup=False,
                       env=build_env(os.environ, {}, {}, work_root),
                       limits=SandboxLimits(kill_grace_s=2.0, sample_interval_s=0.05), **extra)  # type: ignore[arg-type]
    sandbox = SandboxRun(spec)
    sandbox.start()
    return sandbox


def test_the_recipe_is_another_user_without_any_privilege(throwaway_users: Users,
                                                         roots: tuple[Path, Path]) -> None:
    state, work_root = roots
    user = resolve_run_as(throwaway_users.recipe.name, None)
    sandbox = run([sys.executable, "-c", PROBE.format(state=str(state))], work_root, user)
    result = sandbox.wait(60)
    assert result is not None and result.exit_code == 0, result
    line = next(x for x in result.log_text.splitlines() if x.startswith("PROBE "))
    probe = json.loads(line[len("PROBE "):])
    recipe = throwaway_users.recipe
    assert probe["ids"] == [[recipe.uid] * 3, [recipe.gid] * 3] and probe["groups"] == []
    assert not probe["regained"] and probe["no_new_privs"] == "1"
    assert int(probe["cap_eff"], 16) == 0 and int(probe["cap_amb"], 16) == 0
    assert probe["state"] == "Permission denied"
    assert probe["cwd_owner"] == recipe.uid and probe["cwd_mode"] == "0o700"
    assert stat.S_IMODE(work_root.stat().st_mode) == 0o711 and list(work_root.iterdir()) == []


def test_a_stop_kills_the_other_users_tree_and_its_work_dir_goes(throwaway_users: Users,
                                                                roots: tuple[Path, Path]) -> None:
    _, work_root = roots
    user = resolve_run_as(throwaway_users.recipe.name, None)
    child = textwrap.dedent("""
        import os, subprocess, sys, time
        os.makedirs("locked/deeper")
        open("locked/deeper/file", "w").write("x")
        os.chmod("locked/deeper", 0); os.chmod("locked", 0)
        kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print("tree", os.getpid(), kid.pid, flush=True)
        time.sleep(120)
    """)
    sandbox = run([sys.executable, "-c", child], work_root, user)
    pids = wait_until(lambda: next((line.split()[1:] for line in sandbox.log_tail().splitlines()
                                    if line.startswith("tree ")), None), 30, "the tree to start")
    started = time.monotonic()
    sandbox.stop("test stop", grace_s=0.5)
    result = sandbox.wait(60)
    assert result is not None and result.outcome == "stopped", result
    assert time.monotonic() - started < 30
    for pid in map(int, pids):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert list(work_root.iterdir()) == []


def test_bad_run_as_settings_are_refused(throwaway_users: Users) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_run_as("no-such-user-here", None)
    with pytest.raises(ConfigError, match="root"):
        resolve_run_as("root", None)
    with pytest.raises(ConfigError, match="group 'no-such-group'"):
        resolve_run_as(throwaway_users.recipe.name, "no-such-group")
    able, why = switch_support()
    assert able and "CAP_SETUID" in why  # this suite runs as root


def test_an_executor_with_ambient_capabilities_hands_none_on(throwaway_users: Users) -> None:
    """The systemd unit's way: a non-root executor holding the five capabilities as ambient ones.

    The exec wrapper, started by that user, must switch to the recipe user and leave it with no
    capability at all (a uid change between non-root users keeps them unless dropped).
    """
    from executor.sandbox.spawner import LAUNCHER

    executor, recipe = throwaway_users.executor, throwaway_users.recipe
    caps = "+setuid,+setgid,+kill,+chown,+dac_override"
    probe = ("import json, os; s = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l);"
             "print(json.dumps([os.getresuid(), *(s[k].strip() for k in "
             "('CapEff', 'CapPrm', 'CapAmb', 'CapInh'))]))")
    done = subprocess.run(
        ["setpriv", f"--reuid={executor.uid}", f"--regid={executor.gid}", "--clear-groups",
         f"--inh-caps={caps}", f"--ambient-caps={caps}", "--", sys.executable, "-I", "-S", str(LAUNCHER),
         "--user", str(recipe.uid), "--group", str(recipe.gid), "--", sys.executable, "-c", probe],
        cwd="/", capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    ids, *sets = json.loads(done.stdout)
    assert ids == [recipe.uid] * 3 and all(int(s, 16) == 0 for s in sets), done.stdout
