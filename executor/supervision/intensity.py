"""Restart intensity: at most N restarts within a sliding period (OTP's MaxR / MaxT)."""

from __future__ import annotations

from collections import deque


class RestartIntensity:
    """Remembers recent restart times; ``record`` says whether the limit still holds."""

    def __init__(self, max_restarts: int, period_s: float) -> None:
        self.max_restarts = max_restarts
        self.period_s = period_s
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Count a restart at ``now``; False when this one exceeds the intensity (escalate)."""
        self._times.append(now)
        while self._times and now - self._times[0] > self.period_s:
            self._times.popleft()
        return len(self._times) <= self.max_restarts
