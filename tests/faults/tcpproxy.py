"""A loopback TCP proxy that a test can make misbehave at any moment.

Modes (``set_mode``), applied to new *and* open connections:

``PASS``   bytes flow both ways, as if the proxy were not there;
``STALL``  connections are accepted but no byte moves in either direction (a black hole:
           the client's read timeout is what ends its call);
``DROP``   new connections are reset as soon as they are accepted, open ones are reset.

Bytes a client sent during a stall are delivered when the proxy passes again, as a slow network
would deliver them late. ``watch(pattern)`` counts a byte pattern in what clients send (e.g. an
API action name), so a test can wait for calls instead of for time. One thread accepts, one
thread per connection pumps; ``stop()`` closes every socket and joins every thread, so a test
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import enum
import select
import socket
import struct
import threading
from types import TracebackType

TICK_S = 0.05
CHUNK = 65536


class Mode(enum.Enum):
    """What the proxy does with bytes."""

    PASS = "pass"
    STALL = "stall"
    DROP = "drop"


class TcpProxy:
    """Listens on ``127.0.0.1:<ephemeral>`` and forwards to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.mode = Mode.PASS
        self.accepted = 0
        self.reset = 0
        self.seen: dict[bytes, int] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TICK_S)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        """Start accepting."""
        self._acceptor.start()
        return self

    def watch(self, pattern: bytes) -> None:
        """Count ``pattern`` in the bytes clients send from now on (``seen[pattern]``)."""
        self.seen.setdefault(pattern, 0)

    def set_mode(self, mode: Mode) -> None:
        """Switch behaviour for new and open connections."""
        self.mode = mode

    def stop(self) -> None:
        """Close every socket and join every thread (bounded)."""
        self._stopping.set()
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:  # each sees the stop within a tick and closes its sockets
            thread.join(5)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.mode is Mode.DROP:
                self._reset(client)
                continue
            thread = threading.Thread(
                target=self._serve, args=(client,), name=f"{self.name}-conn", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
                self._sockets.add(client)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._sockets.add(upstream)
            self._pump(client, upstream)
        except (OSError, ValueError):
            pass  # upstream down (or a socket closed under us): the client sees a closed connection
        finally:
            if self.mode is Mode.DROP:
                self._reset(client)
            for sock in (client, upstream):
                if sock is not None:
                    _close(sock)
                    with self._lock:
                        self._sockets.discard(sock)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        while not self._stopping.is_set():
            if self.mode is Mode.DROP:
                return
            if self.mode is Mode.STALL:
                self._stopping.wait(TICK_S)
                continue
            readable, _, _ = select.select(list(peers), [], [], TICK_S)
            for sock in readable:
                data = sock.recv(CHUNK)
                if not data:
                    return
                if sock is client:
                    for pattern in list(self.seen):
                        self.seen[pattern] += data.count(pattern)
                peers[sock].sendall(data)

    def _reset(self, sock: socket.socket) -> None:
        """Close with RST (SO_LINGER 0): the peer sees 'connection reset', not a clean close."""
        self.reset += 1
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
