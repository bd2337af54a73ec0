"""The executor's Prometheus metrics, in a registry of their own.

Each ``Metrics`` owns a ``CollectorRegistry`` (never prometheus-client's global one), so several
executors, or several tests, can live in one process. Actors update it through the plain methods
below; ``/metrics`` renders it. A value that changes with time alone (a lease's seconds left) or
that several threads change (an outbox's depth) is computed when scraped, so no actor wakes to
refresh it. Label values are bounded: pool ids come from the config, task
statuses are folded into the known set, actor paths are those of restartable actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from executor import __version__

PREFIX = "remote_executor"

TASK_STATUSES = frozenset(
    {"SUCCESS", "FAILURE", "CANCELLED", "TIMEOUT", "ABORTED", "DUPLICATE", "RUNNING"}
)
"""DataHub's result statuses; anything else is counted as ``OTHER`` to keep label values bounded."""

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
"""Ingestion runs last from seconds to a day."""

PICKUP_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""From the request's creation in DataHub to its start here: polling and queueing delay."""


class Metrics:
    """Counters, gauges and histograms of one executor process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._info = Gauge(f"{PREFIX}_build_info", "Always 1; the version label says which build runs.",
                           ["version"], registry=r)
        self._info.labels(__version__).set(1)
        self._tasks = Counter(f"{PREFIX}_tasks", "Tasks finished, by pool and terminal status.",
                              ["pool", "status"], registry=r)
        self._duration = Histogram(f"{PREFIX}_task_duration_seconds", "Wall time of finished tasks.",
                                   ["pool"], buckets=DURATION_BUCKETS, registry=r)
        self._pickup = Histogram(f"{PREFIX}_task_pickup_latency_seconds",
                                 "Time from the request's creation to its start on this executor.",
                                 ["pool"], buckets=PICKUP_BUCKETS, registry=r)
        self._busy = Gauge(f"{PREFIX}_busy_slots", "Worker slots in use.", ["pool"], registry=r)
        self._capacity = Gauge(f"{PREFIX}_capacity_slots", "Worker slots configured (max_workers).",
                               ["pool"], registry=r)
        self._restarts = Counter(f"{PREFIX}_actor_restarts", "Restarts of supervised actors, by path.",
                                 ["actor"], registry=r)
        self._lease = Gauge(f"{PREFIX}_lease_seconds_left",
                            "Seconds until the pool's leased AWS credentials expire.", ["pool"], registry=r)
        self._outbox = Gauge(f"{PREFIX}_outbox_depth", "Results waiting in the durable outbox.",
                             ["pool"], registry=r)
        self._lease_expiry: dict[str, float] = {}
        """Each pool's lease expiry (epoch seconds), read at scrape time."""
        self._queue = Gauge(f"{PREFIX}_queue_depth_approximate",
                            "SQS ApproximateNumberOfMessages of the pool's queue.", ["pool"], registry=r)

    def init_pool(self, pool_id: str, capacity: float) -> None:
        """Start a pool's series at zero, so that dashboards and autoscalers see 0, not nothing."""
        self._capacity.labels(pool_id).set(capacity)
        self._busy.labels(pool_id).set(0)
        self._outbox.labels(pool_id).set(0)
        self._duration.labels(pool_id)
        self._pickup.labels(pool_id)
        for status in ("SUCCESS", "FAILURE", "CANCELLED", "TIMEOUT"):
            self._tasks.labels(pool_id, status)

    # -- tasks -----------------------------------------------------------------------------
    def count_task(self, pool_id: str, status: str) -> None:
        """One task of ``pool_id`` ended with ``status`` (DataHub's result status)."""
        label = status.upper() if status.upper() in TASK_STATUSES else "OTHER"
        self._tasks.labels(pool_id, label).inc()

    def observe_duration(self, pool_id: str, seconds: float) -> None:
        """A finished task's wall time."""
        self._duration.labels(pool_id).observe(max(0.0, seconds))

    def observe_pickup(self, pool_id: str, latency_s: float) -> None:
        """Seconds from ``requestedAt`` to the task's start; clock skew below zero counts as zero."""
        self._pickup.labels(pool_id).observe(max(0.0, latency_s))

    # -- capacity and state ----------------------------------------------------------------
    def set_busy_slots(self, pool_id: str, busy: float) -> None:
        """Slots in use now (weights summed, in slots)."""
        self._busy.labels(pool_id).set(busy)

    def set_capacity(self, pool_id: str, slots: float) -> None:
        """Slots configured, so that utilisation = busy / capacity can drive autoscaling."""
        self._capacity.labels(pool_id).set(slots)

    def count_restart(self, actor_path: str) -> None:
        """A supervisor restarted the actor at ``actor_path``."""
        self._restarts.labels(actor_path).inc()

    def set_lease_expiry(self, pool_id: str, expires_epoch_s: float) -> None:
        """The pool's current lease expires at ``expires_epoch_s``: the seconds left (negative
        once expired) are worked out at each scrape."""
        first = pool_id not in self._lease_expiry
        self._lease_expiry[pool_id] = expires_epoch_s
        if first:
            self._lease.labels(pool_id).set_function(lambda: self._lease_expiry[pool_id] - time.time())

    def watch_outbox(self, pool_id: str, depth: Callable[[], int]) -> None:
        """Read the pool's outbox depth (results written and not yet accepted by GMS) from
        ``depth`` at each scrape; a read that fails shows NaN (the scrape still answers)."""
        def read() -> float:
            try:
                return float(depth())
            except OSError as exc:
                logger.warning("cannot read the outbox depth of pool {}: {}", pool_id, exc)
                return float("nan")

        self._outbox.labels(pool_id).set_function(read)

    def set_queue_depth(self, pool_id: str, depth: int) -> None:
        """The queue's approximate number of visible messages, as SQS reports it."""
        self._queue.labels(pool_id).set(depth)

    # -- exposition ------------------------------------------------------------------------
    @property
    def content_type(self) -> str:
        """The Content-Type of ``render()``'s output (Prometheus text format)."""
        return str(CONTENT_TYPE_LATEST)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return bytes(generate_latest(self.registry))
