"""Liveness and readiness of the executor, fed by its actors and read by the endpoints.

``HealthState`` is a thread-safe registry: actors register liveness probes (``watch``) and call
``set_ready`` from their own threads; the HTTP server, the file heartbeats and sd_notify read
``liveness()`` and ``readiness()`` from theirs. It holds no pykka types, so every piece can be
tested alone.

Liveness is pulled: a probe says, when asked, how long its component has been stuck (a strand's
turn in progress or the oldest wait in its line, the timer thread's lateness), so nothing has to
wake at rest to prove it is alive.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STALE_FACTOR = 2.0
"""A component is dead when it has been stuck (or its last beat is older) for more than this many
of its own intervals (its allowance)."""

Probe = Callable[[], tuple[float, float]]
"""A pulled liveness reading: ``(stuck_s, allowance_s)``, how long the component has kept work
waiting (0 when idle) and the allowance it is judged by (stale past ``STALE_FACTOR`` times it)."""


@dataclass(frozen=True)
class PoolReadiness:
    """Whether one pool can take work, and why not."""

    ready: bool
    reason: str


class HealthState:
    """Liveness probes per component and readiness per pool, behind one lock (a probe brings
    its own clock: a test ages it without waiting)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[str, Probe] = {}
        self._listener: Callable[[], None] | None = None
        self._pools: dict[str, PoolReadiness] = {}
        self._blockers: dict[tuple[str, str], str] = {}
        self._stopping = ""

    # -- writers ---------------------------------------------------------------------------
    def watch(self, component: str, probe: Probe) -> None:
        """Read ``probe`` for ``component`` at every ``liveness()`` (replacing an earlier probe
        of that name: a restarted actor takes over its predecessor's name)."""
        if not component:
            raise ValueError("watch needs a component name")
        with self._lock:
            self._probes[component] = probe

    def forget(self, component: str) -> None:
        """Stop watching ``component`` (it stopped on purpose: a finished task, a removed pool)."""
        with self._lock:
            self._probes.pop(component, None)

    def on_readiness_change(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` (from the writer's thread, outside the lock) after each write that
        changed what ``readiness()`` reads, so a push (systemd's ``STATUS=``) needs no timer.
        It must not block: it runs inside whichever actor's turn made the change."""
        with self._lock:
            self._listener = listener

    def set_ready(self, pool_id: str, ready: bool, reason: str = "") -> None:
        """Record whether ``pool_id`` can take work; ``reason`` says why not (shown on /readyz)."""
        if not pool_id:
            raise ValueError("set_ready needs a pool id")
        state = PoolReadiness(bool(ready), reason)
        with self._lock:
            changed = self._pools.get(pool_id) != state
            self._pools[pool_id] = state
        self._changed(changed)

    def set_blocker(self, pool_id: str, source: str, reason: str | None) -> None:
        """Keep ``pool_id`` not ready for ``reason`` (from ``source``, e.g. the reporter) until
        called again with None, whatever ``set_ready`` says meanwhile: a pool that polls fine
        but cannot deliver its results is not ready either."""
        with self._lock:
            before = self._blockers.get((pool_id, source))
            if reason:
                self._blockers[(pool_id, source)] = reason
            else:
                self._blockers.pop((pool_id, source), None)
        self._changed(before != (reason or None))

    def remove_pool(self, pool_id: str) -> None:
        """Stop reporting ``pool_id``."""
        with self._lock:
            changed = self._pools.pop(pool_id, None) is not None
            for key in [k for k in self._blockers if k[0] == pool_id]:
                del self._blockers[key]
                changed = True
        self._changed(changed)

    def mark_stopping(self, reason: str = "shutting down") -> None:
        """Report not ready from now on, so that a load balancer or k8s stops counting on us."""
        with self._lock:
            changed = self._stopping != (reason or "shutting down")
            self._stopping = reason or "shutting down"
        self._changed(changed)

    def _changed(self, changed: bool) -> None:
        listener = self._listener
        if changed and listener is not None:
            listener()

    # -- readers ---------------------------------------------------------------------------
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, details)``: ok unless some component has been stuck (its probe's reading) for
        more than twice its allowance. ``age_s`` is that time (0 for an idle component),
        ``interval_s`` the allowance.

        With no component registered yet the process counts as live: the tree is starting, and
        failing here would only make the OS restart a process that has not had a chance to start.
        """
        with self._lock:
            probes = dict(self._probes)
        readings = {name: _read(probe) for name, probe in probes.items()}  # outside the lock: a
        # probe takes its strand's
        components: dict[str, dict[str, Any]] = {}
        stale: list[str] = []
        for name in sorted(readings):
            age, interval = readings[name]
            ok = age <= STALE_FACTOR * interval
            shown = round(age, 3) if math.isfinite(age) else None  # JSON has no infinity
            components[name] = {"ok": ok, "age_s": shown, "interval_s": interval}
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


def _read(probe: Probe) -> tuple[float, float]:
    """A probe's reading; a probe that fails reads as stuck (``inf``): a liveness check that
    cannot look must not pass."""
    try:
        age, interval = probe()
        return max(0.0, float(age)), float(interval)
    except Exception:
        return float("inf"), 0.0
