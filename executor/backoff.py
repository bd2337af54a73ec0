"""The one backoff function used by everything that retries.

Exponential growth from ``min_s`` to ``max_s`` with a random factor (Akka's
``BackoffSupervisor`` shape), so many executors that failed together do not retry
together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays ``min_s * factor**attempt`` capped at ``max_s``, each stretched by up to ``jitter``.

    ``jitter=0.2`` means a delay is multiplied by a random number in ``[1, 1.2)``.
    ``reset_after_s`` is how long things must go well before the attempt count restarts at 0;
    callers that track attempts use it.
    """

    min_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2
    reset_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.min_s < 0 or self.max_s < self.min_s:
            raise ValueError("need 0 <= min_s <= max_s")
        if self.factor < 1 or self.jitter < 0:
            raise ValueError("need factor >= 1 and jitter >= 0")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        return backoff_delay(attempt, self.min_s, self.max_s, self.factor, self.jitter, rng)


def backoff_delay(
    attempt: int,
    min_s: float,
    max_s: float,
    factor: float = 2.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential, capped, then jittered.

    The cap applies before the jitter so that ``max_s`` stays the typical ceiling and
    executors at the cap still spread out.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # Cap the exponent so huge attempt counts cannot overflow a float.
    base = min(max_s, min_s * factor ** min(attempt, 64))
    spread = (rng or random).random() * jitter
    return base * (1.0 + spread)


class RetryState:
    """Counts consecutive failures and forgets them after a quiet period.

    Not thread-safe: each actor owns its own.
    """

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff = backoff
        self.attempt = 0
        self._last_failure: float | None = None
        self._rng = rng

    def failed(self, now: float) -> float:
        """Record a failure at ``now`` (monotonic seconds); return the delay before retrying."""
        if self._last_failure is not None and now - self._last_failure > self.backoff.reset_after_s:
            self.attempt = 0
        delay = self.backoff.delay(self.attempt, self._rng)
        self.attempt += 1
        self._last_failure = now
        return delay

    def succeeded(self) -> None:
        """Forget past failures."""
        self.attempt = 0
        self._last_failure = None
