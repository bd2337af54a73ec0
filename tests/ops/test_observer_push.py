"""The Observer pushes only what outside needs pushed: READY=1 and the first STATUS= at its
start, STATUS= again when readiness changes (not on a beat), WATCHDOG=1 only under a watchdog.
Without the chart's files or a watchdog it keeps no timer at all. A real Observer actor under a
real root supervisor, systemd played by an AF_UNIX datagram socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.observability import HealthState
from executor.observer import TIMERS, Observer, observer_spec
from executor.supervision import start_root
from tests.supervision.probe import child_ref

TIMEOUT_S = 10.0


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(TIMEOUT_S)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    yield sock
    sock.close()


def _observer(health: HealthState, tmp_path: Path) -> tuple[pykka.ActorRef[Any], Observer]:
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
        "observability": {"enabled": False}, "pools": [{"id": "a"}],
    })
    root = start_root("root", [observer_spec(config, health, None)])
    ref = child_ref(root, "observability")
    assert ref is not None
    actor = ref._actor_weakref()
    assert isinstance(actor, Observer)
    return root, actor


def test_status_follows_readiness_as_it_changes_and_nothing_is_scheduled(
    systemd: socket.socket, tmp_path: Path
) -> None:
    health = HealthState()
    health.set_ready("a", False, "waiting for the first lease")
    root, observer = _observer(health, tmp_path)
    try:
        first = systemd.recv(4096).decode()
        assert first == "READY=1"
        assert systemd.recv(4096).decode().startswith("STATUS=not ready:")
        assert observer.beat_s is None
        assert not observer.timers._entries, "no timer: nothing outside needs a push"
        assert health.liveness()[1]["components"].keys() >= {"root/observability", TIMERS}
        health.set_ready("a", True, "leased and polling")
        assert systemd.recv(4096).decode().startswith("STATUS=ready:")
        health.set_ready("a", True, "leased and polling")  # no change: nothing sent
        health.set_blocker("a", "reporter", "GMS refuses results")
        assert "GMS refuses results" in systemd.recv(4096).decode()
        assert not observer.timers._entries
    finally:
        assert root.stop(timeout=TIMEOUT_S)
    assert systemd.recv(4096) == b"STOPPING=1"
    assert "root/observability" not in health.liveness()[1]["components"]
    health.set_ready("a", False, "after the end")  # the listener went with the Observer
    observer._readiness_changed()  # a change told in the moment before: no error for the writer


def test_under_a_watchdog_it_pings_at_half_the_interval(
    systemd: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    health = HealthState()
    health.set_ready("a", True, "")
    root, observer = _observer(health, tmp_path)
    try:
        assert observer.beat_s == 0.2
        seen = [systemd.recv(4096).decode() for _ in range(5)]
        assert seen[0] == "READY=1" and seen.count("WATCHDOG=1") >= 3, seen
    finally:
        assert root.stop(timeout=TIMEOUT_S)
