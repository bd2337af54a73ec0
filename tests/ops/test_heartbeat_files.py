"""FileHeartbeats: the probe files of DataHub's chart follow liveness and readiness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.observability import FileHeartbeats, HealthState
from tests.ops.probes import FakeClock, Turn


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "worker_liveness_heartbeat", tmp_path / "worker_readiness_heartbeat"


def ready_after_one_beat(paths: tuple[Path, Path]) -> tuple[HealthState, FileHeartbeats]:
    """A ready pool's health and its heartbeat files, beaten once (both files exist)."""
    health = HealthState()
    health.set_ready("default", True)
    files = FileHeartbeats(*paths)
    files.beat(health)
    return health, files


def test_live_but_not_ready_touches_only_liveness(paths: tuple[Path, Path]) -> None:
    live, ready = paths
    files = FileHeartbeats(live, ready)
    assert files.beat(HealthState()) == (True, False)
    assert live.exists()
    assert not ready.exists()


def test_live_and_ready_touches_both_and_refreshes_mtime(paths: tuple[Path, Path]) -> None:
    live, ready = paths
    health, files = ready_after_one_beat(paths)
    os.utime(live, (1, 1))
    os.utime(ready, (1, 1))
    assert files.beat(health) == (True, True)
    assert live.stat().st_mtime > 1
    assert ready.stat().st_mtime > 1


def test_probe_deleting_the_file_sees_it_again_after_the_next_beat(paths: tuple[Path, Path]) -> None:
    live, ready = paths
    health, files = ready_after_one_beat(paths)
    live.unlink()
    ready.unlink()
    files.beat(health)
    assert live.exists() and ready.exists()


def test_stale_component_removes_both_files(paths: tuple[Path, Path]) -> None:
    live, ready = paths
    clock = FakeClock()
    health, files = ready_after_one_beat(paths)
    health.watch("root/pool:default/poller", Turn(clock, 1.0))
    clock.now += 3
    assert files.beat(health) == (False, True)
    assert not live.exists()
    assert not ready.exists()


def test_not_ready_removes_the_readiness_file(paths: tuple[Path, Path]) -> None:
    live, ready = paths
    health, files = ready_after_one_beat(paths)
    health.set_ready("default", False, "lease expired")
    files.beat(health)
    assert live.exists()
    assert not ready.exists()


def test_clear_removes_both(paths: tuple[Path, Path]) -> None:
    live, ready = paths
    _, files = ready_after_one_beat(paths)
    files.clear()
    assert not live.exists() and not ready.exists()


def test_a_planted_symlink_is_not_followed(tmp_path: Path, paths: tuple[Path, Path]) -> None:
    live, ready = paths
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.utime(victim, (1, 1))
    live.symlink_to(victim)
    FileHeartbeats(live, ready).beat(HealthState())
    assert victim.stat().st_mtime == 1
    assert victim.read_text() == "keep"


def test_unwritable_location_is_logged_not_raised(tmp_path: Path) -> None:
    files = FileHeartbeats(tmp_path / "missing" / "live", tmp_path / "missing" / "ready")
    health = HealthState()
    health.set_ready("default", True)
    assert files.beat(health) == (True, True)
    assert files.beat(health) == (True, True)


def test_default_paths_are_the_charts() -> None:
    files = FileHeartbeats()
    assert files.liveness_path == Path("/tmp/worker_liveness_heartbeat")
    assert files.readiness_path == Path("/tmp/worker_readiness_heartbeat")
