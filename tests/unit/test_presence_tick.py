"""The presence record goes out on the process's common 30 s tick once GMS took one, so every
pool's record falls due at the same moment and the reporters' shared strand wakes once a period
for all of them (idle CPU); while GMS does not take it, it is tried again after its own short
delay. Real Reporters on a real control plane (and one on a port nothing listens on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.local.controlplane.server import ControlPlane
from executor.observability.health import HealthState
from executor.pool.context import PoolContext
from executor.pool.messages import ReportPresence
from executor.pool.reporter import PRESENCE_INTERVAL_S, PRESENCE_RETRY_S, Reporter
from executor.supervision import ChildContext, Directory
from tests.faults.ledger import wait_until


class ArmingReporter(Reporter):
    """The reporter, recording how it arms its next presence record (on its own thread)."""

    def __init__(self, ctx: ChildContext, pool: PoolContext) -> None:
        super().__init__(ctx, pool)
        self.armed: list[tuple[str, float]] = []

    def tell_self_on_tick(self, period_s: float, message: Any) -> int:
        if isinstance(message, ReportPresence):
            self.armed.append(("tick", period_s))
        return super().tell_self_on_tick(period_s, message)

    def tell_self_after(self, delay_s: float, message: Any) -> int:
        if isinstance(message, ReportPresence):
            self.armed.append(("after", delay_s))
        return super().tell_self_after(delay_s, message)


@pytest.fixture
def start_reporter(tmp_path: Path) -> Iterator[Any]:
    started: list[pykka.ActorRef[Any]] = []

    def start(gms_url: str, token: str, pool_id: str) -> ArmingReporter:
        config = ExecutorConfig.model_validate({
            "gms": {"url": gms_url, "timeout_s": 2}, "state_dir": str(tmp_path / pool_id),
            "pools": [{"id": pool_id}],
        })
        pool = PoolContext(config=config, pool=config.pools[0], token=token, instance_id="test",
                           health=HealthState())
        ctx = ChildContext("reporter", f"root/pool:{pool_id}/reporter", 1, None, Directory())
        started.append(ArmingReporter.start(ctx, pool))
        actor = started[-1].actor_inbox._actor()  # type: ignore[attr-defined]
        assert isinstance(actor, ArmingReporter)
        return actor

    try:
        yield start
    finally:
        for ref in started:
            ref.stop()


def test_a_taken_presence_record_arms_the_next_on_the_common_tick(
    control_plane: ControlPlane, start_reporter: Any
) -> None:
    reporters = [start_reporter(control_plane.gms_url, control_plane.token, pool)
                 for pool in ("default", "other")]
    for reporter in reporters:
        wait_until(lambda r=reporter: r.armed, 30, "the next presence record to be armed")
        assert reporter.armed == [("tick", PRESENCE_INTERVAL_S)]


def test_a_presence_record_gms_did_not_take_is_tried_again_soon(start_reporter: Any) -> None:
    reporter = start_reporter("http://127.0.0.1:9", "made-up-gms-token", "default")
    wait_until(lambda: reporter.armed, 30, "the presence record to be tried again")
    assert reporter.armed[0] == ("after", PRESENCE_RETRY_S)
