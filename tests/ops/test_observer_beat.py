"""How often the Observer beats: as the pools' actors, unless the chart's files or systemd's
watchdog need it faster (each beat wakes the timer and the observer threads: idle CPU)."""

from __future__ import annotations

from executor.observer import BEAT_S, FILE_BEAT_S, beat_interval_s


def test_without_files_or_watchdog_it_beats_with_the_pools() -> None:
    assert beat_interval_s(files=False, watchdog_s=None) == BEAT_S == 5.0


def test_the_charts_heartbeat_files_keep_their_two_seconds() -> None:
    assert beat_interval_s(files=True, watchdog_s=None) == FILE_BEAT_S == 2.0
    assert beat_interval_s(files=True, watchdog_s=60.0) == FILE_BEAT_S


def test_the_watchdog_is_pinged_at_least_twice_per_interval() -> None:
    assert beat_interval_s(files=False, watchdog_s=60.0) == BEAT_S
    assert beat_interval_s(files=False, watchdog_s=6.0) == 3.0
    assert beat_interval_s(files=True, watchdog_s=3.0) == 1.5
