"""The executor's threads run under SCHED_BATCH; a recipe gets back the policy it started with.

The switch is tried in a fresh interpreter (it re-classes every thread of the process that
calls it, which must not be pytest's). The recipe's side runs real processes: the exec
wrapper started from a SCHED_BATCH process, and the executor's own spawn path through a spawn
server put under SCHED_BATCH, each with and without the wrapper's ``--policy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor import scheduling
from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec, build_env
from executor.sandbox.launch import __file__ as LAUNCHER
from executor.sandbox.spawner import SpawnServer

from .helpers import wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
REPO = Path(__file__).resolve().parents[2]
POLICY_PROBE = "import os; print('POLICY', os.sched_getscheduler(0), flush=True)"


def _in_fresh_interpreter(code: str) -> dict[str, object]:
    """Run ``code`` (which prints one JSON line) in a new interpreter; its answer."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_every_thread_switches_and_threads_started_later_inherit_it() -> None:
    answer = _in_fresh_interpreter("""
        import json, os, threading
        from executor import scheduling
        before = threading.Event()
        threading.Thread(target=before.wait, daemon=True).start()  # a thread that exists already
        switched = scheduling.run_as_batch()
        after = threading.Event()
        threading.Thread(target=after.wait, daemon=True).start()
        tids = os.listdir("/proc/self/task")
        print(json.dumps({"switched": switched, "threads": len(tids),
                          "policies": sorted({os.sched_getscheduler(int(t)) for t in tids}),
                          "options": scheduling.recipe_options()}))
    """)
    assert answer == {"switched": True, "threads": 3, "policies": [os.SCHED_BATCH],
                      "options": ["--policy", str(os.SCHED_OTHER)]}


def test_a_policy_the_operator_chose_stays_and_recipes_are_told_nothing() -> None:
    answer = _in_fresh_interpreter("""
        import json, os
        from executor import scheduling
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # as systemd's CPUSchedulingPolicy=idle
        print(json.dumps({"switched": scheduling.run_as_batch(), "policy": os.sched_getscheduler(0),
                          "options": scheduling.recipe_options()}))
    """)
    assert answer == {"switched": False, "policy": os.SCHED_IDLE, "options": []}


@pytest.mark.parametrize("options", [["--policy", str(os.SCHED_OTHER)], []], ids=["given back", "inherited"])
def test_the_exec_wrapper_gives_the_recipe_its_policy(options: list[str]) -> None:
    """From a SCHED_BATCH parent (as the executor is), the wrapper's program runs SCHED_OTHER with
    ``--policy``, and SCHED_BATCH without it (a fork inherits the policy)."""
    wrapper = [sys.executable, "-I", "-S", LAUNCHER, *options, "--", sys.executable, "-c", POLICY_PROBE]
    batch_parent = ("import os, sys; os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0)); "
                    "os.execv(sys.argv[1], sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", batch_parent, *wrapper], capture_output=True, text=True,
                          timeout=60, check=True)
    expected = os.SCHED_OTHER if options else os.SCHED_BATCH
    assert done.stdout.split() == ["POLICY", str(expected)]


@pytest.fixture
def batch_server() -> Iterator[SpawnServer]:
    """A spawn server under SCHED_BATCH, as the executor's (it inherits the executor's policy)."""
    server = SpawnServer()
    try:
        server.start()
        wait_until(lambda: server.pid is not None, 30, "the spawn server to start")
        assert server.pid is not None
        os.sched_setscheduler(server.pid, os.SCHED_BATCH, os.sched_param(0))
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("switched", [True, False], ids=["executor switched", "executor did not"])
def test_a_recipe_spawned_by_the_executor_runs_the_policy_it_started_with(
        batch_server: SpawnServer, work_root: Path, switched: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduling, "_recipe_policy", os.SCHED_OTHER if switched else None)
    spec = SandboxSpec(argv=[sys.executable, "-c", POLICY_PROBE], work_root=work_root,
                       env=build_env(os.environ, {}, {}, work_root), limits=SandboxLimits(kill_grace_s=2.0),
                       task_id="policy-test")
    run = SandboxRun(spec, spawner=batch_server)
    run.start()
    result = run.wait(60)
    assert result is not None and result.exit_code == 0, result
    # the server forked it: through the wrapper it would have this process's SCHED_OTHER
    expected = os.SCHED_OTHER if switched else os.SCHED_BATCH
    assert f"POLICY {expected}" in result.log_text.splitlines()
