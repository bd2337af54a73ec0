"""Executors whose /healthz and /readyz a fault test reads, with one or several pools.

``FaultWorld.executor`` starts one pool on an ephemeral observability port; the tests of
liveness under a slow GMS, of refused tokens and of a bad lease need the port (to watch
liveness and readiness while the fault lasts) and sometimes a second pool. ``observed`` builds
the same configuration as ``FaultWorld.executor`` with those two additions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.faults.harness import Executor, FaultWorld
from tests.ops.http import get
from tests.service.processes import closed_port


@dataclass
class Observed:
    """A started executor and its observability port."""

    executor: Executor
    port: int

    def healthz(self) -> tuple[int, dict[str, Any]]:
        answer = get(f"http://127.0.0.1:{self.port}/healthz")
        return answer.status, json.loads(answer.body or b"{}")

    def readyz(self) -> tuple[int, dict[str, Any]]:
        answer = get(f"http://127.0.0.1:{self.port}/readyz")
        return answer.status, json.loads(answer.body or b"{}")

    def pool_reason(self, pool: str = "default") -> str:
        """The readiness reason /readyz gives for ``pool``; "" while the endpoint is not up."""
        try:
            _, body = self.readyz()
        except OSError:
            return ""
        return str(body.get("pools", {}).get(pool, {}).get("reason", ""))


def observed(world: FaultWorld, name: str = "a", *, pools: tuple[str, ...] = ("default",),
             gms_url: str | None = None, state: str | None = None, gms_timeout_s: float = 2.0,
             **pool: Any) -> Observed:
    """Start an executor serving ``pools`` (same settings each), observable on a known port."""
    port = closed_port()
    settings = [{
        "id": pool_id, "max_workers": 2, "poll_wait_s": 1, "visibility_s": 10,
        "progress_interval_s": 1, "signal_poll_interval_s": 1,
        "limits": {"kill_grace_s": 2},
        "venvs": {"bundled_root": str(world.venv_root), "dependency_resolution": False},
        "secrets": {"stores": ["env", "datahub"]},
        **pool,
    } for pool_id in pools]
    config = {
        "gms": {"url": gms_url or world.live_cp.gms_url, "timeout_s": gms_timeout_s},
        "state_dir": str(world.tmp / f"state-{state or name}"),
        "logging": {"format": "json", "level": "INFO"},
        "observability": {"host": "127.0.0.1", "port": port},
        "shutdown": {"drain_s": 3.0, "kill_grace_s": 2},
        "pools": settings,
    }
    executor = Executor(world, name, config, {"DATAHUB_TELEMETRY_ENABLED": "false"})
    world.executors.append(executor)
    return Observed(executor, port)
