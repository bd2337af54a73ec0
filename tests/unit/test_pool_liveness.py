"""A pool actor is watched through its strand from its start to its end: a handler stuck past
twice its allowance (5 s + one GMS call per actor on the strand) fails ``/healthz`` under its
own path, a slow but bounded one does not, and an actor that ended is no longer watched (a
parked pool or a restart's backoff is not dead). A fake clock moves the turns' ages."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from executor.config import ExecutorConfig
from executor.observability import HealthState
from executor.pool.base import BEAT_S, PoolActor
from executor.pool.context import PoolContext
from executor.supervision import ChildContext, Directory
from executor.supervision.strand import Strand
from tests.ops.probes import FakeClock
from tests.supervision.probe import wait_for

PATH = "root/pool:default/leaser"


class Stuck(PoolActor):
    """Blocks in its handler until released (as a handler wedged on a lock would)."""

    def handle(self, message: Any) -> Any:
        entered, release = message
        entered.set()
        release.wait(30)
        return None


def test_a_stuck_handler_fails_liveness_under_its_path_until_it_ends(tmp_path: Path) -> None:
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9", "timeout_s": 2}, "state_dir": str(tmp_path),
        "pools": [{"id": "default"}],
    })
    clock = FakeClock()
    health = HealthState()
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=health)
    strand = Strand("test/pool", clock=clock)
    ref = Stuck.start(ChildContext("leaser", PATH, 1, None, Directory(), strand=strand), pool)
    allowance = BEAT_S + pool.gms_call_s  # one actor on the strand
    entered, release = threading.Event(), threading.Event()
    try:
        wait_for(lambda: PATH in health.liveness()[1]["components"], what="the actor to be watched")
        ref.tell((entered, release))
        assert entered.wait(10)
        clock.now += 2 * allowance  # a slow GMS call and more: still live
        ok, details = health.liveness()
        assert ok and details["components"][PATH]["interval_s"] == allowance == 7.0
        clock.now += 1.0
        ok, details = health.liveness()
        assert not ok and details["stale"] == [PATH]
    finally:
        release.set()
        ref.stop(timeout=10)
    assert PATH not in health.liveness()[1]["components"]  # ended on purpose: not watched
    assert health.liveness()[0]
