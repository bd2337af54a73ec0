"""A TCP relay for tests whose answers can slow to a drip: one byte at a time, a pause between.

Put between a proxy and a TLS origin, it splits the origin's TLS records across many slow
reads, which a per-read socket timeout never trips: only a deadline over the whole call does.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class DripRelay:
    """Relays each connection on 127.0.0.1 to ``backend``; while ``dripping`` is set, what the
    backend sends comes back one byte every ``every_s`` seconds (the other way: at once)."""

    def __init__(self, backend: tuple[str, int], every_s: float) -> None:
        self._backend, self._every_s = backend, every_s
        self.dripping = threading.Event()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="drip-relay", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def __enter__(self) -> DripRelay:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in [self._acceptor, *self._threads]:
            thread.join(10)
        assert not any(t.is_alive() for t in [self._acceptor, *self._threads])
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
                upstream = socket.create_connection(self._backend, timeout=10)
            except OSError:
                return
            upstream.settimeout(None)
            self._sockets += [conn, upstream]
            for source, target, drips in ((conn, upstream, False), (upstream, conn, True)):
                thread = threading.Thread(target=self._copy, args=(source, target, drips), daemon=True)
                self._threads.append(thread)
                thread.start()

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
