"""Fixtures of the adapter tests: a real moto server on loopback, and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from executor.datahub.lease import Lease
from tests.security.gms_peer import HostilePeer


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto server (SQS, Secrets Manager, ...) for this module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with no listener (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_lease(queue_url: str, *, hours: float = 1.0, pool_id: str = "default") -> Lease:
    """A lease for ``queue_url`` with dummy credentials (moto does not check them)."""
    now = datetime.now(timezone.utc)
    return Lease(
        pool_id=pool_id,
        queue_url=queue_url,
        region="us-east-1",
        access_key_id="AKIATESTLEASE",
        secret_access_key="lease-secret-key-value",
        session_token="lease-session-token-value",
        expiration=now + timedelta(hours=hours),
        issued_at=now,
    )


@pytest.fixture(scope="module")
def gms_cp() -> Iterator[Any]:
    """The local control plane, shared by a module's tests (each uses its own names and requests).

    Not a fake: the project's real control plane, with moto SQS/STS behind its lease-checking
    gateway, started through its documented API.
    """
    from executor.local.controlplane.server import ControlPlane

    cp = ControlPlane(pools=("default",), lease_seconds=3600, max_receive_count=5).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def peers() -> Iterator[list[HostilePeer]]:
    """Hostile peers a test starts (it appends them); each stopped after the test."""
    started: list[HostilePeer] = []
    yield started
    for peer in started:
        peer.stop()
