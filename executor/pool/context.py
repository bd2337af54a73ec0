"""What every actor of one pool shares: settings, GMS access, health and metrics hooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.config import ExecutorConfig, PoolSettings
from executor.datahub.gms import GmsClient

ACTOR_BLOCKING_TIMEOUT_S = 5.0
"""Longest a GMS call may block an actor, so a stop is honoured within seconds."""


@dataclass(frozen=True)
class PoolContext:
    """Shared, immutable per-pool facts. Each actor makes its own GMS client (own session)."""

    config: ExecutorConfig
    pool: PoolSettings
    token: str = field(repr=False)
    instance_id: str
    health: Any = None
    """An ``executor.observability.HealthState`` or None (tests without observability)."""
    metrics: Any = None
    """An ``executor.observability.Metrics`` or None."""
    started_at: float = field(default_factory=time.time)
    gms_factory: Callable[[PoolContext], GmsClient] | None = None
    """Override of ``new_gms`` for tests that need a different client."""
    once: bool = False
    """``run --once``: accept a single request that needs running, then nothing more."""
    on_delivered: Callable[[str, str], None] | None = None
    """Called with (urn, status) once GMS has accepted a terminal result."""

    @property
    def pool_id(self) -> str:
        """This pool's id."""
        return self.pool.id

    @property
    def state_dir(self) -> Path:
        """This pool's private state directory (outbox, logs, work dirs, venv cache)."""
        return self.config.state_dir / "pools" / self.pool.id

    def new_gms(self) -> GmsClient:
        """A GMS client whose calls block at most a few seconds."""
        if self.gms_factory is not None:
            return self.gms_factory(self)
        gms = self.config.gms
        verify: bool | str = str(gms.ca_bundle) if gms.ca_bundle else gms.verify_tls
        return GmsClient(
            gms.url,
            self.token,
            timeout_s=min(gms.timeout_s, ACTOR_BLOCKING_TIMEOUT_S),
            verify=verify,
            proxies=self.config.proxy.as_requests_proxies() or None,
        )

    def heartbeat(self, component: str, interval_s: float) -> None:
        """Record that ``component`` is alive (for ``/healthz``)."""
        if self.health is not None:
            self.health.heartbeat(component, interval_s)

    def set_ready(self, ready: bool, reason: str) -> None:
        """Record whether this pool can take work (for ``/readyz``)."""
        if self.health is not None:
            self.health.set_ready(self.pool.id, ready, reason)
