"""A clock the test moves by hand, and liveness probes that read it (``HealthState.watch``)."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Turn:
    """A component's probe: in one turn since ``began`` (a strand's ``stall_s``), judged by
    ``allowance_s``; ``end`` ends it (an idle component reads 0)."""

    def __init__(self, clock: FakeClock, allowance_s: float) -> None:
        self.clock = clock
        self.allowance_s = allowance_s
        self.began: float | None = clock.now

    def end(self) -> None:
        self.began = None

    def __call__(self) -> tuple[float, float]:
        stuck = 0.0 if self.began is None else self.clock.now - self.began
        return stuck, self.allowance_s
