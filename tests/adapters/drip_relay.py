"""A TCP relay for tests whose answers can slow to a drip: one byte at a time, a pause between.

Put between a proxy and a TLS origin, it splits the origin's TLS records across many slow
reads, which a per-read socket timeout never trips: only a deadline over the whole call does.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.adapters.loopback_server import LoopbackServer


class DripRelay(LoopbackServer):
    """Relays each connection on 127.0.0.1 to ``backend``; while ``dripping`` is set, what the
    backend sends comes back one byte every ``every_s`` seconds (the other way: at once)."""

    def __init__(self, backend: tuple[str, int], every_s: float) -> None:
        super().__init__("drip-relay")
        self._backend, self._every_s = backend, every_s
        self.dripping = threading.Event()

    def serve(self, conn: socket.socket) -> None:
        try:
            upstream = self.track(socket.create_connection(self._backend, timeout=10))
        except OSError:
            return
        upstream.settimeout(None)
        self.thread(self._copy, conn, upstream, False)
        self._copy(upstream, conn, True)

    def _copy(self, source: socket.socket, target: socket.socket, drips: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not (drips and self.dripping.is_set()):
                    target.sendall(data)
                    continue
                for byte in data:
                    target.sendall(bytes([byte]))
                    if self._stopping.wait(self._every_s):
                        return
            target.shutdown(socket.SHUT_WR)
