"""Liveness and readiness of the executor, fed by its actors and read by the endpoints.

``HealthState`` is a thread-safe registry: actors call ``heartbeat`` and ``set_ready`` from their
own threads; the HTTP server, the file heartbeats and sd_notify read ``liveness()`` and
``readiness()`` from theirs. It holds no pykka types, so every piece can be tested alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STALE_FACTOR = 2.0
"""A component is dead when its last beat is older than this many of its own intervals."""


@dataclass(frozen=True)
class Beat:
    """The last heartbeat of one component (monotonic clock)."""

    at: float
    interval_s: float


@dataclass(frozen=True)
class PoolReadiness:
    """Whether one pool can take work, and why not."""

    ready: bool
    reason: str


class HealthState:
    """Heartbeats per component and readiness per pool, behind one lock.

    ``clock`` is injectable so that staleness can be tested without waiting.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, Beat] = {}
        self._pools: dict[str, PoolReadiness] = {}
        self._blockers: dict[tuple[str, str], str] = {}
        self._stopping = ""

    # -- writers ---------------------------------------------------------------------------
    def heartbeat(self, component: str, interval_s: float) -> None:
        """Record that ``component`` is alive and will beat again within ``interval_s``."""
        if not component:
            raise ValueError("heartbeat needs a component name")
        if interval_s <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval_s!r}")
        with self._lock:
            self._beats[component] = Beat(self._clock(), float(interval_s))

    def forget(self, component: str) -> None:
        """Stop watching ``component`` (it stopped on purpose: a finished task, a removed pool)."""
        with self._lock:
            self._beats.pop(component, None)

    def set_ready(self, pool_id: str, ready: bool, reason: str = "") -> None:
        """Record whether ``pool_id`` can take work; ``reason`` says why not (shown on /readyz)."""
        if not pool_id:
            raise ValueError("set_ready needs a pool id")
        with self._lock:
            self._pools[pool_id] = PoolReadiness(bool(ready), reason)

    def set_blocker(self, pool_id: str, source: str, reason: str | None) -> None:
        """Keep ``pool_id`` not ready for ``reason`` (from ``source``, e.g. the reporter) until
        called again with None, whatever ``set_ready`` says meanwhile: a pool that polls fine
        but cannot deliver its results is not ready either."""
        with self._lock:
            if reason:
                self._blockers[(pool_id, source)] = reason
            else:
                self._blockers.pop((pool_id, source), None)

    def remove_pool(self, pool_id: str) -> None:
        """Stop reporting ``pool_id``."""
        with self._lock:
            self._pools.pop(pool_id, None)
            for key in [k for k in self._blockers if k[0] == pool_id]:
                del self._blockers[key]

    def mark_stopping(self, reason: str = "shutting down") -> None:
        """Report not ready from now on, so that a load balancer or k8s stops counting on us."""
        with self._lock:
            self._stopping = reason or "shutting down"

    # -- readers ---------------------------------------------------------------------------
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, details)``: ok unless some component's beat is older than twice its interval.

        With no component registered yet the process counts as live: the tree is starting, and
        failing here would only make the OS restart a process that has not had a chance to beat.
        """
        now = self._clock()
        with self._lock:
            beats = dict(self._beats)
        components: dict[str, dict[str, Any]] = {}
        stale: list[str] = []
        for name in sorted(beats):
            beat = beats[name]
            age = max(0.0, now - beat.at)
            ok = age <= STALE_FACTOR * beat.interval_s
            components[name] = {"ok": ok, "age_s": round(age, 3), "interval_s": beat.interval_s}
            if not ok:
                stale.append(name)
        details: dict[str, Any] = {"status": "fail" if stale else "ok", "components": components}
        if stale:
            details["stale"] = stale
        return not stale, details

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, details)``: ok when every registered pool is ready and at least one is registered."""
        with self._lock:
            pools = dict(self._pools)
            blockers = dict(self._blockers)
            stopping = self._stopping
        for (pool_id, _), reason in sorted(blockers.items()):
            if pool_id in pools:
                state = pools[pool_id]
                reason = reason if state.ready else f"{state.reason or 'not ready'}; {reason}"
                pools[pool_id] = PoolReadiness(False, reason)
        reasons: list[str] = []
        if stopping:
            reasons.append(stopping)
        if not pools:
            reasons.append("no pool registered yet")
        for pool_id in sorted(pools):
            state = pools[pool_id]
            if not state.ready:
                reasons.append(f"pool {pool_id}: {state.reason or 'not ready'}")
        body: dict[str, Any] = {
            "status": "not ready" if reasons else "ready",
            "pools": {p: {"ready": s.ready, "reason": s.reason} for p, s in sorted(pools.items())},
        }
        if reasons:
            body["reasons"] = reasons
        return not reasons, body
