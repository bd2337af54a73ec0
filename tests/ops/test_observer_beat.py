"""How often the Observer pushes: only for what outside needs pushed, the chart's files and
systemd's watchdog; without either it has no timer at all (liveness is read when asked)."""

from __future__ import annotations

from executor.observer import FILE_BEAT_S, beat_interval_s


def test_without_files_or_watchdog_it_never_beats() -> None:
    assert beat_interval_s(files=False, watchdog_s=None) is None


def test_the_charts_heartbeat_files_keep_their_two_seconds() -> None:
    assert beat_interval_s(files=True, watchdog_s=None) == FILE_BEAT_S == 2.0
    assert beat_interval_s(files=True, watchdog_s=60.0) == FILE_BEAT_S


def test_the_watchdog_is_pinged_at_least_twice_per_interval() -> None:
    assert beat_interval_s(files=False, watchdog_s=60.0) == 30.0
    assert beat_interval_s(files=False, watchdog_s=6.0) == 3.0
    assert beat_interval_s(files=True, watchdog_s=3.0) == 1.5
