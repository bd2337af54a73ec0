"""Observability actor: serves /healthz, /readyz and /metrics, and keeps the OS informed.

It owns the HTTP endpoint, the optional file heartbeats of DataHub's chart and systemd's
sd_notify (READY=1 once the tree is up, WATCHDOG=1 while every watched part is live, STATUS= with
readiness). It is the first child of the root so it is up before the pools.

Liveness is read when asked (``HealthState.watch``), so the Observer wakes only for what outside
needs pushed: the chart's files every 2 s, systemd's watchdog at half its interval. Without
either it has no timer at all; a readiness change reaches ``STATUS=`` as it happens (a listener
on ``HealthState``), not on a beat.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pykka

from executor.config import ExecutorConfig
from executor.observability import FileHeartbeats, ObservabilityServer, SystemdNotifier
from executor.pool.messages import Beat
from executor.supervision import ChildContext, ChildSpec, SupervisedActor
from executor.supervision.strand import Strand
from executor.supervision.timers import LATE_ALLOWANCE_S, SCHEDULER

ALLOWANCE_S = 5.0
"""How long a turn of the Observer's strand (the control strand, with the root) may last, or a
message wait there (twice this is stuck): the period its beat had."""
FILE_BEAT_S = 2.0
"""With heartbeat files: DataHub's chart expects them touched every 2 s."""
TIMERS = "timers"
"""The component name of the process's timer thread in ``/healthz``."""


@dataclass(frozen=True)
class _ReadinessChanged:
    """From ``HealthState``'s listener: send systemd the new ``STATUS=``."""


def beat_interval_s(files: bool, watchdog_s: float | None) -> float | None:
    """How often the observer must push: every 2 s for the chart's files, at least twice per
    systemd watchdog interval; None when nothing outside needs a push (no timer at rest)."""
    periods = ([FILE_BEAT_S] if files else []) + ([watchdog_s / 2] if watchdog_s else [])
    return min(periods) if periods else None


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
        if self.health is not None:
            self.health.watch(self.ctx.path, self.liveness)
            self.health.watch(TIMERS, timers_liveness)
            if self.notifier.enabled:
                self.health.on_readiness_change(self._readiness_changed)
        if self.settings.enabled and self.health is not None:
            self.server = ObservabilityServer(
                self.settings.host, self.settings.port, self.health, self.metrics
            )
            self.server.start()
            self.log.info("health and metrics on http://{}:{}", self.settings.host, self.server.port)
        if self.settings.heartbeat_files:
            self.files = FileHeartbeats(self.settings.liveness_file, self.settings.readiness_file)
        self.actor_ref.tell(Beat())  # the first push: READY=1, the files, the first STATUS=

    def teardown(self) -> None:
        if self.health is not None:
            self.health.on_readiness_change(None)
            self.health.forget(self.ctx.path)
            self.health.forget(TIMERS)
        self.notifier.stopping()
        if self.files is not None:
            self.files.clear()
        if self.server is not None:
            self.server.stop()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Beat):
            self._beat()
            if self.beat_s is not None:
                self.tell_self_on_tick(self.beat_s, Beat())
        elif isinstance(message, _ReadinessChanged):
            self._send_status()
        return None

    def liveness(self) -> tuple[float, float]:
        """``(stuck_s, allowance_s)`` of the control strand, for ``/healthz`` (any thread)."""
        return self.strand.stall_s(), ALLOWANCE_S

    def _readiness_changed(self) -> None:
        """On the writer's thread: hand the change to this actor (a tell never blocks). An
        Observer that has ended (its teardown clears the listener just after) is no error of
        the writer's."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_ReadinessChanged())

    def _beat(self) -> None:
        if self.health is None:
            return
        if self.files is not None:
            self.files.beat(self.health)
        if not self._ready_sent:
            self.notifier.ready()
            self._ready_sent = True
        if self.notifier.watchdog_interval_s() is not None and self.health.liveness()[0]:
            self.notifier.watchdog()
        self._send_status()

    def _send_status(self) -> None:
        if self.health is None or not self.notifier.enabled:
            return
        ready, details = self.health.readiness()
        status = f"{'ready' if ready else 'not ready'}: {details}"
        if status != self._status:  # systemd keeps the last one: a repeat tells it nothing
            self._status = status
            self.notifier.status(status)


def timers_liveness() -> tuple[float, float]:
    """``(late_s, allowance_s)`` of the process's timer thread: nothing beats through it, so
    ``/healthz`` reads how late its earliest entry is (``Scheduler.overdue_s``)."""
    return SCHEDULER.overdue_s(), LATE_ALLOWANCE_S


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
