"""The book of issued credential leases: which access key belongs to which pool, until when.

moto never enforces expiry, so the SQS gateway asks this book about every request's key.
Expiry is our own clock (``lease_seconds``), not moto's, so tests can use short leases and
``expire`` ends leases at once. Leases live in memory only: after a restart every earlier key
is unknown and answered with ``InvalidClientTokenId``, which makes executors lease again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class LeaseState(Enum):
    """What the gateway should answer for a key."""

    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Lease:
    """One issued key: its pool and the wall-clock second it stops working."""

    access_key_id: str
    pool_id: str
    expires_at: float


class LeaseBook:
    """Thread-safe registry of issued leases; ``clock`` is wall-clock seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}

    def issue(self, access_key_id: str, pool_id: str, lease_seconds: float) -> Lease:
        """Record a new key valid for ``lease_seconds`` from now."""
        lease = Lease(access_key_id, pool_id, self._clock() + lease_seconds)
        with self._lock:
            self._prune()
            self._leases[access_key_id] = lease
        return lease

    def check(self, access_key_id: str) -> tuple[LeaseState, Lease | None]:
        """The state of a key, and its lease when known."""
        with self._lock:
            lease = self._leases.get(access_key_id)
        if lease is None:
            return LeaseState.UNKNOWN, None
        if self._clock() >= lease.expires_at:
            return LeaseState.EXPIRED, lease
        return LeaseState.VALID, lease

    def expire(self, pool_id: str | None = None) -> int:
        """End now every lease of ``pool_id`` (all pools if None); returns how many."""
        now = self._clock()
        count = 0
        with self._lock:
            for key, lease in list(self._leases.items()):
                if (pool_id is None or lease.pool_id == pool_id) and lease.expires_at > now:
                    self._leases[key] = Lease(key, lease.pool_id, now)
                    count += 1
        return count

    def _prune(self) -> None:
        """Forget keys expired for a day (they are still answered ExpiredToken until then)."""
        horizon = self._clock() - 86400
        for key in [k for k, v in self._leases.items() if v.expires_at < horizon]:
            del self._leases[key]
