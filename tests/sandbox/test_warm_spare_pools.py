"""The warm spare across pools (``executor.pool.unconfined``): the pools share the recipe uid.

A recipe running outside ``bwrap`` in any pool could open another pool's spare's stdin or write
into its work dir, and a venv build of any pool runs pip's code unisolated as that uid: so such
a run or build kills every pool's spare, and none is made until it ends. Real parts: the spawn
server, task cgroups, work dirs and the stand-in CLI of ``test_warm_spare``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from executor.pool.sandboxing import SandboxLauncher
from executor.pool.warm import WarmSpare
from executor.sandbox import SandboxSpec
from executor.sandbox.spawner import SpawnServer
from tests.fixtures.spares import SPARE_PREFIX, assert_no_work_dir_left, left_work_dirs

from .helpers import wait_until
from .launching import PREFIX, Outcome, held_spare
from .test_warm_spare import DEADLINE_S, ask, gone, make_pool, run_task, spare_pid


def test_a_run_of_another_pool_kills_the_spare_and_the_next_task_spawns_fresh(
        tmp_path: Path, server: SpawnServer) -> None:
    """Process isolation, two pools of one uid: pool B's recipe must never run beside pool A's
    spare (it could write to its stdin, plant a file in its work dir)."""
    first = make_pool(tmp_path / "a", server, idle_s=3600)  # never idled out during the test
    second = make_pool(tmp_path / "b", server, idle_s=3600)
    try:
        run_task(first, "first", tmp_path / "first")
        pid = spare_pid(first)
        launcher = SandboxLauncher(second, PREFIX + "long")
        outcome = Outcome()
        launcher.prestart(ask("long", tmp_path / "long", until=tmp_path / "release"), on_exit=outcome)
        try:
            wait_until(lambda: gone(pid), DEADLINE_S, "pool B's spawn to kill pool A's spare")
            launcher.give_secrets({})
            wait_until(lambda: (tmp_path / "long").exists(), DEADLINE_S, "pool B's recipe to run")
            assert first.warm.ready is None and not first.warm.making, "none made beside it"
            (tmp_path / "release").touch()
            assert outcome.wait(DEADLINE_S).exit_code == 0
        finally:
            launcher.kill()
        again = run_task(first, "again", tmp_path / "again")
        assert again["pid"] != pid and first.warm.counts.adopted == 0, "pool A's next task spawned fresh"
        assert first.warm.counts.discarded >= 1
    finally:
        first.warm.close()
        second.warm.close()


def test_a_build_or_an_unconfined_run_of_another_pool_kills_the_spare_in_any_isolation(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    """Pool A's spare may live beside A's own ``bwrap`` runs (``alone`` False), not beside pool
    B's venv build (pip runs unisolated) nor B's recipe outside ``bwrap``: each kills it, and
    A's offer meanwhile is kept until that ends."""
    first, second = WarmSpare(), WarmSpare()
    make = functools.partial(held_spare, server, make_spec)

    try:
        for how in ({"alone": False, "build": True}, {"alone": True, "build": False}):
            first.offer("plain", make)
            wait_until(lambda: first.ready is not None, DEADLINE_S, "pool A's spare")
            spare = first.ready
            assert spare is not None
            second.run_begins(**how)
            assert first.ready is None and spare.run.wait(DEADLINE_S) is not None, f"killed: {how}"
            first.offer("plain", make)  # pool A's task's input meanwhile
            assert first.ready is None and not first.making, "kept until B's run ends"
            second.run_ended(**how)
            wait_until(lambda: first.ready is not None, DEADLINE_S, "A's spare once B's run ended")
            first.clear()
        first.run_begins(alone=False)  # A's own bwrap run: its spare stays beside it
        first.offer("plain", make)
        wait_until(lambda: first.ready is not None, DEADLINE_S, "a spare beside A's own bwrap run")
        first.run_ended()
    finally:
        first.close()
        second.close()


def test_the_leftover_check_exempts_only_the_spare_the_pool_holds(
        tmp_path: Path, server: SpawnServer) -> None:
    """An adopted spare's work dir is a run's: a process left in it (a recipe that escaped) must
    not make it pass for a spare. Only the pool's held spare's dir is exempt."""
    pool = make_pool(tmp_path, server, idle_s=3600)
    try:
        run_task(pool, "first", tmp_path / "first")
        spare_pid(pool)
        work = pool.warm.ready.run.work_dir if pool.warm.ready is not None else None
        assert work is not None
        assert_no_work_dir_left(work.parent, [pool])  # the held spare's dir passes
        left = work.parent / (SPARE_PREFIX + "adopted1")
        left.mkdir()
        stay = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], cwd=left,
                                stdin=subprocess.PIPE)
        try:
            assert left_work_dirs(work.parent, [pool]) == [left], "a live process's cwd is no spare"
        finally:
            stay.communicate(b"", timeout=DEADLINE_S)
            left.rmdir()
    finally:
        pool.warm.close()
