"""CredentialLeaser: keeps a valid lease (queue URL + temporary AWS credentials) for its pool.

It asks GMS ``listExecutorConfigs``, hands each lease to the poller, and refreshes 45 minutes
after issue or 5 minutes before expiry, whichever comes first (for short leases: between half
and three quarters of the lifetime, ``Lease.refresh_at``). On failure it retries with
backoff and keeps the old lease until it expires; an empty answer (pool not READY) is retried,
never fatal. The executor never talks to STS itself.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from executor.backoff import Backoff, RetryState
from executor.datahub.lease import Lease
from executor.errors import ExecutorError
from executor.pool.base import PoolActor
from executor.pool.context import PoolContext
from executor.pool.messages import (
    POLLER,
    LeaseGranted,
    LeaseLost,
    LeaseRejected,
    LeaseWanted,
    RefreshLease,
)
from executor.supervision import ChildContext

REFRESH_AFTER_S = 45 * 60
REFRESH_BEFORE_EXPIRY_S = 5 * 60
MIN_REJECTION_GAP_S = 5.0
"""Answer repeated ``LeaseRejected`` at most this often: every in-flight call may report one."""


class CredentialLeaser(PoolActor):
    """Owns the pool's current lease."""

    def __init__(self, ctx: ChildContext, pool: PoolContext, backoff: Backoff | None = None) -> None:
        super().__init__(ctx, pool)
        self.lease: Lease | None = None
        self.retry = RetryState(backoff or Backoff(min_s=1.0, max_s=60.0, reset_after_s=300))
        self._pending_timer: int | None = None
        self._last_forced = 0.0

    def setup(self) -> None:
        self.pool.set_ready(False, "waiting for the first lease")
        self.actor_ref.tell(RefreshLease("start"))

    def handle(self, message: Any) -> Any:
        if isinstance(message, RefreshLease):
            self._refresh(message.reason)
        elif isinstance(message, LeaseWanted):
            if self.lease is not None and not self.lease.expired(_now()):
                self.ctx.directory.tell(POLLER, LeaseGranted(self.lease))
        elif (
            isinstance(message, LeaseRejected) and time.monotonic() - self._last_forced >= MIN_REJECTION_GAP_S
        ):
            self._last_forced = time.monotonic()
            self.log.warning("AWS refused the leased credentials ({}); refreshing", message.error)
            self._refresh("rejected")
        return None

    def _refresh(self, reason: str) -> None:
        if self._pending_timer is not None:
            self.timers.cancel(self._pending_timer)
            self._pending_timer = None
        try:
            lease = self.gms.list_executor_configs(self.pool.pool_id)
        except ExecutorError as exc:
            self._failed(f"GMS listExecutorConfigs failed: {exc}")
            return
        if lease is None:
            self._failed(f"GMS lists no READY executor config for pool {self.pool.pool_id!r}")
            return
        self.retry.succeeded()
        self.lease = lease
        if self.pool.metrics is not None:  # the seconds left are worked out at each scrape
            self.pool.metrics.set_lease_expiry(self.pool.pool_id, lease.expiration.timestamp())
        self.pool.credentials.remember(lease.access_key_id, lease.secret_access_key, lease.session_token,
                                       expires=lease.expiration.timestamp())
        delay = max(
            1.0, (lease.refresh_at(REFRESH_AFTER_S, REFRESH_BEFORE_EXPIRY_S) - _now()).total_seconds()
        )
        self.log.info(
            "lease obtained ({}); expires {}, next refresh in {:.0f}s",
            reason,
            lease.expiration.isoformat(),
            delay,
        )
        self.ctx.directory.tell(POLLER, LeaseGranted(lease))
        self._pending_timer = self.tell_self_after(delay, RefreshLease("scheduled"))

    def _failed(self, error: str) -> None:
        delay = self.retry.failed(time.monotonic())
        if self.lease is not None and self.lease.expired(_now()):
            self.lease = None
            self.ctx.directory.tell(POLLER, LeaseLost(error))
        if self.lease is None:
            self.pool.set_ready(False, f"no lease: {error}")
        self.log.warning(
            "{}; retrying in {:.1f}s (keeping the current lease: {})",
            error,
            delay,
            "yes" if self.lease else "none",
        )
        self._pending_timer = self.tell_self_after(delay, RefreshLease("retry"))


def _now() -> datetime:
    return datetime.now(timezone.utc)
