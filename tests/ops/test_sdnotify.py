"""SystemdNotifier against a real AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET would be."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.observability import SystemdNotifier


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_datagrams_reach_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.notify("READY=1")
    assert sock.recv(4096) == b"READY=1"
    assert notifier.ready("2 pools")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2 pools"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_status_cannot_inject_other_assignments(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.status("not ready: pool a\nREADY=1")
    assert sock.recv(4096) == b"STATUS=not ready: pool a READY=1"
    notifier.status("x" * 500)
    assert len(sock.recv(4096)) == len("STATUS=") + 200


def test_abstract_namespace_socket() -> None:
    name = f"remote-executor-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.notify("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_no_op_outside_systemd() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert not notifier.notify("READY=1")
    assert notifier.watchdog_interval_s() is None


def test_relative_socket_path_is_ignored() -> None:
    assert not SystemdNotifier({"NOTIFY_SOCKET": "relative/notify"}).enabled


def test_a_vanished_socket_is_swallowed(tmp_path: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.notify("WATCHDOG=1")
    assert not notifier.notify("WATCHDOG=1")


def test_reads_the_environment_by_default(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = SystemdNotifier()
    assert notifier.watchdog_interval_s() == 60.0
    notifier.notify("READY=1")
    assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier(env).watchdog_interval_s() == expected
