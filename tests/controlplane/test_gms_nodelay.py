"""The control plane's GMS answers without Nagle delays: its accepted connections set TCP_NODELAY.

Its answers leave as two writes (headers, then body); with Nagle on, the body waited for the
client's delayed ACK, about 40 ms per call (the request input read, the secret read, every
result write). The bench shows the latency (``bench/run.py --only pickup``); here the socket
setting is checked on a real kept-alive connection, without timing anything.
"""

from __future__ import annotations

import socket
from typing import Any

from executor.datahub.gms import GmsClient
from executor.datahub.http_origin import Origin


def test_accepted_gms_connections_have_nagle_off(control_plane: Any) -> None:
    origin = Origin(control_plane.gms_url)
    client = GmsClient(control_plane.gms_url, control_plane.token, origin=origin)
    try:
        client.batch_get_aspects("dataHubExecutionRequest", ["urn:li:dataHubExecutionRequest:x"],
                                 ["dataHubExecutionRequestInput"])
        server = control_plane._gms
        with server._lock:
            connections = list(server._connections)
        assert connections, "the origin keeps its connection to GMS open"
        assert all(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for conn in connections)
    finally:
        origin.close()
