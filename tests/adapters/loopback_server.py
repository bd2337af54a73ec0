"""A listener on 127.0.0.1 whose every connection gets a thread of its own, all stopped on exit.

The tests' relays (``DripRelay``, ``TlsFront``) differ only in what they do with a connection;
their start, accept loop and stop (listener shut, sockets shut, every thread joined and
checked) are this one class.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Self


class LoopbackServer:
    """Subclasses implement ``serve(conn)``; sockets it opens go to ``track`` so ``__exit__``
    shuts them and the threads blocked on them end."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name=name, daemon=True)
        self.accepted = 0

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def __enter__(self) -> Self:
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

    def track(self, sock: socket.socket) -> socket.socket:
        self._sockets.append(sock)
        return sock

    def thread(self, target: Callable[..., object], *args: object) -> None:
        """Start ``target(*args)`` on a thread ``__exit__`` joins."""
        thread = threading.Thread(target=target, args=args, name=f"{self._name}-conn", daemon=True)
        self._threads.append(thread)
        thread.start()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.thread(self.serve, self.track(conn))
