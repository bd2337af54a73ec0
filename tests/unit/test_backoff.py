"""The one backoff function: its sequence, cap, jitter range and reset."""

from __future__ import annotations

import random

import pytest

from executor.backoff import Backoff, RetryState, backoff_delay


def test_sequence_doubles_then_caps_without_jitter() -> None:
    delays = [backoff_delay(n, 0.5, 8.0, 2.0, 0.0) for n in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_stretches_within_bounds_and_varies() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, 1.0, 60.0, 2.0, 0.25, rng) for _ in range(200)]
    assert all(8.0 <= d < 10.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100


def test_huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(10_000, 1.0, 30.0, 2.0, 0.0) == 30.0


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(min_s=5, max_s=1)
    with pytest.raises(ValueError):
        backoff_delay(-1, 1, 2)


def test_retry_state_counts_and_resets_after_quiet_period() -> None:
    state = RetryState(Backoff(min_s=1, max_s=100, jitter=0, reset_after_s=10))
    assert [state.failed(t) for t in (0, 1, 2, 3)] == [1, 2, 4, 8]
    assert state.failed(20) == 1  # quiet for more than 10 s: start over
    state.succeeded()
    assert state.failed(21) == 1
