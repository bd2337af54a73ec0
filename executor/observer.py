"""Observability actor: serves /healthz, /readyz and /metrics, and keeps the OS informed.

It owns the HTTP endpoint, the optional file heartbeats of DataHub's chart and systemd's
sd_notify (READY=1 once the tree is up, WATCHDOG=1 while every actor beats, STATUS= with
readiness). It is the first child of the root so it is up before the pools.
"""

from __future__ import annotations

from typing import Any

from executor.config import ExecutorConfig
from executor.observability import FileHeartbeats, ObservabilityServer, SystemdNotifier
from executor.pool.messages import Beat
from executor.supervision import ChildContext, ChildSpec, SupervisedActor
from executor.supervision.strand import Strand

BEAT_S = 5.0
"""The beat when nothing outside asks for a faster one: as often as the pools' actors beat."""
FILE_BEAT_S = 2.0
"""With heartbeat files: DataHub's chart expects them touched every 2 s."""


def beat_interval_s(files: bool, watchdog_s: float | None) -> float:
    """How often the observer beats: every 2 s for the chart's files, at least twice per systemd
    watchdog interval, else ``BEAT_S`` (each beat wakes two threads: idle CPU)."""
    interval = FILE_BEAT_S if files else BEAT_S
    return min(interval, watchdog_s / 2) if watchdog_s else interval


class Observer(SupervisedActor):
    """Runs the health/metrics endpoint and the OS-level heartbeats."""

    def __init__(self, ctx: ChildContext, config: ExecutorConfig, health: Any, metrics: Any) -> None:
        super().__init__(ctx)
        self.settings = config.observability
        self.health = health
        self.metrics = metrics
        self.server: ObservabilityServer | None = None
        self.files: FileHeartbeats | None = None
        self.notifier = SystemdNotifier()
        self._ready_sent = False
        self._status: str | None = None
        self.beat_s = beat_interval_s(self.settings.heartbeat_files, self.notifier.watchdog_interval_s())

    def setup(self) -> None:
        if self.settings.enabled and self.health is not None:
            self.server = ObservabilityServer(
                self.settings.host, self.settings.port, self.health, self.metrics
            )
            self.server.start()
            self.log.info("health and metrics on http://{}:{}", self.settings.host, self.server.port)
        if self.settings.heartbeat_files:
            self.files = FileHeartbeats(self.settings.liveness_file, self.settings.readiness_file)
        self.actor_ref.tell(Beat())

    def teardown(self) -> None:
        self.notifier.stopping()
        if self.files is not None:
            self.files.clear()
        if self.server is not None:
            self.server.stop()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Beat):
            self._beat()
            self.tell_self_on_tick(self.beat_s, Beat())  # on the pools' beat ticks
        return None

    def _beat(self) -> None:
        if self.health is None:
            return
        self.health.heartbeat(self.ctx.path, self.beat_s)
        live, _ = self.health.liveness()
        ready, details = self.health.readiness()
        if self.files is not None:
            self.files.beat(self.health)
        if not self._ready_sent:
            self.notifier.ready()
            self._ready_sent = True
        if live:
            self.notifier.watchdog()
        status = f"{'ready' if ready else 'not ready'}: {details}"
        if status != self._status:  # systemd keeps the last one: a repeat tells it nothing
            self._status = status
            self.notifier.status(status)


def observer_spec(
    config: ExecutorConfig, health: Any, metrics: Any, strand: Strand | None = None
) -> ChildSpec:
    """The root's first child, on ``strand`` if given (the root's: neither handler blocks)."""
    return ChildSpec(
        "observability",
        lambda ctx: Observer.start(ctx, config, health, metrics),
        stop_timeout_s=10.0,
        strand=strand,
    )
