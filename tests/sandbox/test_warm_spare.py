"""A pool's warm spare (``executor.pool.warm``): a recipe process spawned ahead of the next task.

Real parts: the spawn server, task cgroups, work dirs, and a purpose-written stand-in CLI that
writes down who it is (pid, argv, environment) once its input came. A second task of the same
plain run adopts the spare; in process isolation no spare is made while a run of the pool is
in progress, and a task with another run kills the spare when it spawns its own; the spare dies
with nothing left after its idle time, the pool's stop and the drain; a dead spare, or one whose
adoption fails, is never adopted and is cleaned up; with the setting off nothing is spawned
ahead; the spare holds no secret.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from executor.datahub.aspects import ExecutionRequest
from executor.pool.context import PoolContext
from executor.pool.sandboxing import SandboxLauncher, work_roots
from executor.pool.warm import SPARE_ID, WarmSpare
from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec
from executor.sandbox.cgroups import cached_cgroups
from executor.sandbox.orphans import MARKER_VAR
from executor.sandbox.spawner import SpawnServer
from tests.fixtures.fake_venvs import bundled_cli

from .helpers import py, wait_until
from .launching import PREFIX, Outcome, pool_context

PLUGIN = "warmtest"
OTHER = "warmother"
CLI = """
import json, os, sys, time
envelope = json.loads(sys.stdin.read())
config = json.loads(envelope["__recipe_yaml__"])["source"]["config"]
me = {"pid": os.getpid(), "argv": sys.argv, "env": dict(os.environ)}
with open(config["marker"] + ".tmp", "w") as out:
    json.dump(me, out)
os.rename(config["marker"] + ".tmp", config["marker"])
deadline = time.monotonic() + 60
while config.get("until") and not os.path.exists(config["until"]) and time.monotonic() < deadline:
    time.sleep(0.01)
print("done", flush=True)
"""
SECRET = "s3cret-value-of-the-first-task"
DEADLINE_S = 60.0


def cli_root(root: Path) -> Path:
    """``<root>/warmtest-bundled`` (and ``warmother-bundled``) whose ``datahub`` writes down its
    pid, argv and env."""
    for plugin in (PLUGIN, OTHER):
        bundled_cli(root, plugin, CLI)
    return root


def ask(request_id: str, marker: Path, extra_env: dict[str, str] | None = None,
        debug: bool = False, plugin: str = PLUGIN, until: Path | None = None) -> ExecutionRequest:
    """The task's request: its recipe writes down who it is at ``marker``, then runs until the
    file ``until`` exists (when given)."""
    config = {"marker": str(marker), "until": str(until) if until is not None else ""}
    recipe = {"source": {"type": plugin, "config": config}, "sink": {"type": "console"}}
    args = {"recipe": json.dumps(recipe), "version": "bundled", "debug_mode": "true" if debug else "false"}
    if extra_env:
        args["extra_env_vars"] = json.dumps(extra_env)
    return ExecutionRequest.from_aspect(PREFIX + request_id, {"task": "RUN_INGEST", "args": args})



def make_pool(tmp_path: Path, server: SpawnServer, on: bool = True, idle_s: float = 60.0,
              dynamic: bool = False) -> PoolContext:
    base = pool_context(tmp_path, cli_root(tmp_path / "venvs"), grace_s=2.0, dynamic=dynamic)
    settings = base.pool.model_copy(update={"warm_spare": on})
    config = base.config.model_copy(update={"pools": (settings,)})
    return dataclasses.replace(base, pool=settings, config=config, spawner=server, warm=WarmSpare(idle_s))


@pytest.fixture
def pool(tmp_path: Path, server: SpawnServer) -> Iterator[PoolContext]:
    context = make_pool(tmp_path, server)
    yield context
    context.warm.clear()
    assert_nothing_left(context)


def run_task(pool: PoolContext, request_id: str, marker: Path, secrets: dict[str, str] | None = None,
             **how: Any) -> dict[str, Any]:
    """One task through its launcher as the Task drives it; what its recipe wrote down."""
    launcher = SandboxLauncher(pool, PREFIX + request_id)
    wanted = ask(request_id, marker, **how)
    outcome = Outcome()
    launcher.prepare(wanted)
    launcher.prestart(wanted, on_exit=outcome)
    try:
        launcher.give_secrets(secrets or {})
        result = outcome.wait(DEADLINE_S)
    finally:
        launcher.kill()
    assert result.exit_code == 0, result
    me: dict[str, Any] = json.loads(marker.read_text())
    me["log"] = launcher.log_path().read_text() if launcher.log_path() is not None else ""
    return me


def spare_pid(pool: PoolContext, plugin: str = PLUGIN) -> int:
    """The waiting spare's pid, once it has exec'd ``plugin``'s CLI: the spawn server forks it
    first, and until the exec its argv and environment are the server's, not the recipe's."""
    wait_until(lambda: pool.warm.ready is not None and pool.warm.ready.run.pid is not None, DEADLINE_S,
               "a warm spare")
    spare = pool.warm.ready
    assert spare is not None and spare.run.pid is not None
    pid = spare.run.pid
    wait_until(lambda: _runs_cli_of(pid, plugin), DEADLINE_S, f"the spare to exec {plugin}'s CLI")
    return pid


def _runs_cli_of(pid: int, plugin: str) -> bool:
    try:
        return f"{plugin}-bundled" in " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return False


def spare_cgroups() -> list[Path]:
    """This process's spare cgroups (another executor on the machine may hold its own spare)."""
    support = cached_cgroups()
    mine = f"-p{os.getpid()}-"
    parents = {p for p in (support.memory_parent, support.pids_parent) if p is not None}
    found = []
    for parent in parents:
        try:  # the shared parent goes when the last executor's run on the machine removes it
            found.extend(d for d in parent.iterdir() if d.name.startswith(SPARE_ID) and mine in d.name)
        except FileNotFoundError:
            continue
    return found


def assert_nothing_left(pool: PoolContext) -> None:
    """No spare process, work dir or cgroup left once its run has ended."""
    wait_until(lambda: not [p for p in psutil.Process().children() if p.pid != pool.spawner.pid],
               DEADLINE_S, "every recipe process to be reaped")
    wait_until(lambda: not any(root.exists() and any(root.iterdir()) for root in work_roots(pool)),
               DEADLINE_S, "every work dir to be removed")
    wait_until(lambda: not spare_cgroups(), DEADLINE_S, "every spare cgroup to be removed")


def test_the_next_plain_task_adopts_the_spare_spawned_before_it_was_asked(
        pool: PoolContext, tmp_path: Path) -> None:
    first = run_task(pool, "first", tmp_path / "first")
    pid = spare_pid(pool)
    spawned_at = psutil.Process(pid).create_time()
    asked_at = time.time()
    second = run_task(pool, "second", tmp_path / "second")
    assert second["pid"] == pid != first["pid"], "the second task ran in the spare"
    assert spawned_at < asked_at, "its recipe process was started before the task was asked for"
    assert "warm spare" in second["log"] and "done" in second["log"], "the task's own log"
    assert pool.warm.counts.adopted == 1
    assert spare_pid(pool) not in (pid, first["pid"]), "a new spare for the task after"


def gone(pid: int) -> bool:
    """Dead or a zombie (it may end between the two looks: then it is gone too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", [{"extra_env": {"TASK_SETTING": "its own"}}, {"debug": True}])
def test_a_task_with_another_run_spawns_its_own_and_kills_the_spare(
        pool: PoolContext, tmp_path: Path, how: dict[str, Any]) -> None:
    """Process isolation: a recipe running beside the spare could tamper with it (same uid)."""
    run_task(pool, "first", tmp_path / "first")
    pid = spare_pid(pool)
    other = run_task(pool, "other", tmp_path / "other", **how)
    assert other["pid"] != pid, "a fresh spawn"
    if "debug" in how:
        assert "--debug" in other["argv"]
    else:
        assert other["env"]["TASK_SETTING"] == "its own"
    wait_until(lambda: gone(pid), DEADLINE_S, "the spare beside the fresh run to be killed")
    assert pool.warm.counts.adopted == 0 and pool.warm.counts.discarded == 1
    assert spare_pid(pool) != pid, "a new one once that run ended"


def test_no_spare_is_spawned_while_a_task_of_the_pool_runs(pool: PoolContext, tmp_path: Path) -> None:
    """Process isolation: the spare is made once no run of the pool is in progress."""
    launcher = SandboxLauncher(pool, PREFIX + "long")
    wanted = ask("long", tmp_path / "long", until=tmp_path / "release")
    outcome = Outcome()
    launcher.prestart(wanted, on_exit=outcome)
    try:
        launcher.give_secrets({})  # where the spare used to be asked for and made at once
        wait_until(lambda: (tmp_path / "long").exists(), DEADLINE_S, "the task's recipe to run")
        assert pool.warm.ready is None and not pool.warm.making, "nothing spawned beside it"
        (tmp_path / "release").touch()
        assert outcome.wait(DEADLINE_S).exit_code == 0
    finally:
        launcher.kill()
    spare_pid(pool)
    assert pool.warm.counts.made == 1, "made once the task's run ended"


def test_a_spare_whose_adoption_fails_is_discarded_and_the_task_spawns_fresh(
        pool: PoolContext, tmp_path: Path) -> None:
    """The task's log file cannot be opened (its directory became a link, which the log never
    follows): the adoption raises, the spare is killed and cleaned up, the task spawns and
    reports the error."""
    run_task(pool, "first", tmp_path / "first")
    pid = spare_pid(pool)
    logs = pool.state_dir / "logs"
    logs.rename(tmp_path / "logs-elsewhere")
    logs.symlink_to(tmp_path / "logs-elsewhere")
    launcher = SandboxLauncher(pool, PREFIX + "second")
    wanted = ask("second", tmp_path / "second")
    outcome = Outcome()
    launcher.prestart(wanted, on_exit=outcome)
    try:
        launcher.give_secrets({})
        result = outcome.wait(DEADLINE_S)
    finally:
        launcher.kill()
    assert result.exit_code != 0 and launcher.run is not None and launcher.run.pid != pid, result
    wait_until(lambda: gone(pid), DEADLINE_S, "the spare to be killed")
    assert pool.warm.counts.adopted == 0 and pool.warm.counts.discarded == 1


def test_a_task_of_another_venv_replaces_the_spare_with_one_of_its_own(
        pool: PoolContext, tmp_path: Path) -> None:
    run_task(pool, "first", tmp_path / "first")
    pid = spare_pid(pool)
    other = run_task(pool, "other", tmp_path / "other", plugin=OTHER)
    assert other["pid"] != pid and f"{OTHER}-bundled" in other["argv"][0]
    wait_until(lambda: gone(pid), DEADLINE_S, "the first venv's spare to be killed")
    replaced = spare_pid(pool, OTHER)
    again = run_task(pool, "again", tmp_path / "again", plugin=OTHER)
    assert again["pid"] == replaced, "the next task of that venv adopts it"


def test_a_dead_spare_is_never_adopted_and_is_cleaned_up(pool: PoolContext, tmp_path: Path) -> None:
    run_task(pool, "first", tmp_path / "first")
    pid = spare_pid(pool)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), DEADLINE_S, "the spare to die")
    second = run_task(pool, "second", tmp_path / "second")
    assert second["pid"] != pid, "spawned fresh"
    assert pool.warm.counts.adopted == 0 and pool.warm.counts.discarded >= 1


def test_an_idle_spare_is_killed_with_nothing_left(tmp_path: Path, server: SpawnServer) -> None:
    pool = make_pool(tmp_path, server, idle_s=0.5)
    run_task(pool, "first", tmp_path / "first")
    spare_pid(pool)
    wait_until(lambda: pool.warm.ready is None, DEADLINE_S, "the idle spare to be killed")
    assert_nothing_left(pool)
    assert pool.warm.counts.discarded == 1


def test_the_pools_stop_and_the_drain_kill_the_spare(pool: PoolContext, tmp_path: Path) -> None:
    run_task(pool, "first", tmp_path / "first")
    spare_pid(pool)
    pool.warm.clear()  # the pool's stop or restart
    assert pool.warm.ready is None
    assert_nothing_left(pool)
    run_task(pool, "second", tmp_path / "second")  # a restarted pool makes spares again
    spare_pid(pool)
    pool.warm.close()  # the drain: killed, and no task makes one any more
    run_task(pool, "third", tmp_path / "third")
    assert pool.warm.ready is None
    assert_nothing_left(pool)
    assert pool.warm.counts.made == 2


def test_with_the_setting_off_nothing_is_spawned_ahead(tmp_path: Path, server: SpawnServer) -> None:
    pool = make_pool(tmp_path, server, on=False)
    first = run_task(pool, "first", tmp_path / "first")
    second = run_task(pool, "second", tmp_path / "second")
    assert first["pid"] != second["pid"]
    assert pool.warm.ready is None and pool.warm.counts.made == 0
    assert [p.pid for p in psutil.Process().children()] == [server.pid], "no process but the server"


def test_the_spare_holds_no_secret(pool: PoolContext, tmp_path: Path) -> None:
    run_task(pool, "first", tmp_path / "first", secrets={"PASSWORD": SECRET})
    spare = psutil.Process(spare_pid(pool))
    assert SECRET not in " ".join(spare.cmdline())
    environ = spare.environ()
    assert not any(SECRET in value for value in environ.values())
    assert not any(pool.token in value for value in environ.values()), "no executor credential"
    work_dir = Path(environ["HOME"])
    assert work_dir.parent in work_roots(pool), "where the start-up sweep looks"
    assert environ[MARKER_VAR].endswith(work_dir.name), "marked for the orphan sweep"
    for path in work_dir.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes()
    second = run_task(pool, "second", tmp_path / "second", secrets={"PASSWORD": "second-task-secret"})
    assert second["pid"] == spare.pid and SECRET not in json.dumps(second)


def test_an_adopted_runs_wall_time_counts_from_its_adoption(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    """Held 1.8 s as a spare, then 1.8 s of work: over the 3 s limit since the spawn, not since
    the adoption (without the restart the monitor ends it as ``wall_time``)."""
    limits = SandboxLimits(kill_grace_s=2.0, sample_interval_s=0.05, wall_seconds=3.0)
    work = "import sys, time; sys.stdin.read(); time.sleep(1.8); print('worked', flush=True)"
    spare = SandboxRun(make_spec(py(work), hold_input=True, limits=limits, task_id=SPARE_ID), spawner=server)
    spare.start(here=True)
    born = time.monotonic()
    wait_until(lambda: time.monotonic() - born > 1.8, 10, "the spare to have waited")
    task = make_spec(py(work), hold_input=True, limits=limits, task_id="the-task")
    assert spare.adopt(task), "alive and held: adoptable"
    assert spare.spec is task
    spare.give_input(b"its input", ())
    result = spare.wait(DEADLINE_S)
    assert result is not None and result.exit_code == 0 and result.breach is None, result
    assert "worked" in result.log_text


def test_a_run_given_its_input_or_stopped_is_not_adoptable(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    spec = make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id=SPARE_ID)
    given = SandboxRun(spec, spawner=server)
    given.start(here=True)
    given.give_input(b"", ())
    assert not given.adopt(spec)
    stopped = SandboxRun(spec, spawner=server)
    stopped.start(here=True)
    stopped.stop("no task came", grace_s=0)
    assert not stopped.adopt(spec)
    for run in (given, stopped):
        assert run.wait(DEADLINE_S) is not None


def test_a_spare_killed_unused_does_not_restart_the_spawn_servers_idle_time(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    """An unused spare's end is no use of the server: it stops ``IDLE_S`` after the last spawn,
    not ``IDLE_S`` after the spare's death (a pool at rest would hold it twice as long)."""
    unused = SandboxRun(make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id=SPARE_ID),
                        spawner=server)
    unused.start(here=True)
    spawned_use = server._last_used
    unused.stop("no task came", grace_s=0)
    assert unused.wait(DEADLINE_S) is not None
    assert server._last_used == spawned_use, "its reap left the idle clock alone"
    used = SandboxRun(make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id="task"),
                      spawner=server)
    used.start(here=True)
    spawned_use = server._last_used
    used.give_input(b"", ())
    assert used.wait(DEADLINE_S) is not None
    assert server._last_used > spawned_use, "a run that got its input counts as use at its end"
