"""A pool's warm spare end to end: the real CLI, SQS on moto, the local control plane.

The executor's pool ``other`` has ``warm_spare: true``. After a first run, the pool holds one
CLI process spawned ahead (no input, no secret); the next plain run is that process: its report
names the spare's work dir, and the process was started before the request was made. A run with
an env override spawns its own, which kills the spare (process isolation: a recipe beside it
could tamper with it), and a new one is there after it. The executor's stop leaves nothing
behind (the harness checks threads and processes; the work root is checked here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from executor.pool.warm import SPARE_ID
from tests.fixtures.controlplane import graphql
from tests.fixtures.executor import CREATE_SECRET, ExecutorHarness, running_executor, sink_recipe

if TYPE_CHECKING:
    from executor.local.controlplane.server import ControlPlane

pytestmark = pytest.mark.cli
POOL = "other"


@pytest.fixture
def warm(
    e2e_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, bundled_venv_root: Path,
) -> Iterator[ExecutorHarness]:
    variables = {"input": {"name": "E2E_SINK_TOKEN", "value": e2e_control_plane.token}}
    graphql(e2e_control_plane, CREATE_SECRET, variables)
    state = tmp_path_factory.mktemp("warm-executor") / "state"
    pools = [{"id": POOL, "max_workers": 1, "warm_spare": True}]
    with running_executor(e2e_control_plane, state, bundled_venv_root, pools=pools) as harness:
        yield harness
    work = state / "pools" / POOL / "work"
    assert not work.exists() or not list(work.iterdir()), "no work dir left after the stop"


def the_spare(deadline_s: float = 120.0) -> psutil.Process:
    """The recipe process held as the spare (its HOME, its work dir, is named for it)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for child in psutil.Process().children(recursive=True):
            try:
                if Path(child.environ().get("HOME", "/")).name.startswith(SPARE_ID):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError("no warm spare appeared")


def test_the_next_run_is_the_spare_spawned_before_it_was_requested(warm: ExecutorHarness) -> None:
    token = warm.cp.token  # the sink's token, a DataHub secret given to the first run
    _, first = warm.submit(sink_recipe(warm.cp), pool=POOL)
    assert warm.wait_terminal(first)["status"] == "SUCCESS"
    spare = the_spare()
    work_dir = Path(spare.environ()["HOME"]).name
    assert token not in " ".join(spare.cmdline()) and token not in str(spare.environ()), "holds no secret"
    requested_at = time.time()
    _, second = warm.submit(sink_recipe(warm.cp), pool=POOL)
    result = warm.wait_terminal(second)
    assert result["status"] == "SUCCESS", result["report"]
    assert f"work dir {work_dir}" in result["report"], "the second run is the spare's process"
    assert spare.create_time() < requested_at
    starting = [line for line in warm.logs.for_request(second) if line.startswith("starting RUN_INGEST")]
    assert len(starting) == 1 and f"adopts the warm spare (pid {spare.pid})" in starting[0], starting

    other = the_spare()
    _, third = warm.submit(sink_recipe(warm.cp), pool=POOL, extra_args={"extra_env_vars": '{"E2E_X": "1"}'})
    result = warm.wait_terminal(third)
    assert result["status"] == "SUCCESS", result["report"]
    assert "warm spare" not in result["report"], "an env override spawns its own"
    assert not other.is_running() or other.status() == psutil.STATUS_ZOMBIE, "and kills the spare"
    assert the_spare().pid != other.pid, "a new spare once that run ended"
