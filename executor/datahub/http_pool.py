"""Kept-alive HTTP/1.1 connections to one origin, directly or through a proxy, on bare sockets.

What urllib3's pool did for the executor, without its per-call objects: a ``Route`` (where
TCP goes, TLS, a CONNECT tunnel) is fixed once per ``Origin``; a ``ConnectionPool`` keeps up to
``keep`` idle connections (LIFO) and makes more when callers need them at the same time; a
``Connection`` writes a request's head and body in one write (``send_all``); the answer is read off
its socket by ``bounded_http.response_on`` (``http_answer``), every step bounded by the call's
deadline. Nothing is retried here: a call that may have reached the server is the caller's
to retry or not.

A kept connection the server closed while it was idle (GMS's or a load balancer's idle
timeout) is found before it is used, as urllib3 found it: one ``poll`` with no wait shows the
peer's FIN (or stray bytes) as readable, and the connection is dropped for a new one, so the
call is never sent into a closed connection. That check cannot see a server's idle timeout
firing between it and the send, nor a firewall or NAT that forgot an idle flow without a word
(the call would wait out its whole deadline): a connection idle longer than ``IDLE_S`` (or than
the server's ``Keep-Alive: timeout=N`` said, less a second) is closed instead of used, and TCP
keepalive probes a connection from ``KEEPALIVE_IDLE_S`` of silence on (a long poll, a slow GMS).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from executor.datahub.bounded_http import CHUNK_BYTES, DeadlineExceeded, ProxyError, left_of, send_all
from executor.datahub.tls_tunnel import TlsInTls, open_tunnel

IDLE_S = 20.0
"""How long a connection may rest between calls: under the usual server idle timeouts
(Jetty 30 s, an AWS load balancer 60 s, nginx's keepalive 75 s)."""
KEEPALIVE_IDLE_S, KEEPALIVE_EVERY_S, KEEPALIVE_PROBES = 15, 5, 3


class InsecureRequestWarning(UserWarning):
    """A call to an https origin whose certificate is not checked (``verify: false``)."""


class Watcher(Protocol):
    """Told which connection each call uses (the SQS receiver's ``interrupt.Interrupter``)."""

    def taken(self, conn: Any) -> None: ...

    def connected(self, conn: Any) -> None: ...


@dataclass(frozen=True)
class Route:
    """How a connection reaches the origin; decided once, when the ``Origin`` is made."""

    host: str
    """Where TCP goes: the origin, or the proxy."""
    port: int
    tls: ssl.SSLContext | None = None
    """TLS to the origin (an https origin), else None."""
    server_name: str = ""
    """The origin's host name, for SNI and the certificate check."""
    tunnel: str | None = None
    """``host:port`` to ``CONNECT`` to through the proxy (an https origin behind a proxy)."""
    proxy_tls: ssl.SSLContext | None = None
    """TLS to the proxy itself (an https:// proxy)."""
    proxy_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Sent to the proxy, on the CONNECT or on each request it forwards (its credentials: never
    in a repr)."""
    proxied: bool = False
    """``host`` and ``port`` are a proxy's: failing to reach it is a ``ProxyError``."""


class Connection:
    """One TCP (maybe TLS) connection; used by one call at a time."""

    __slots__ = ("_poller", "generation", "idle_until", "sock")

    def __init__(self, generation: int) -> None:
        self.sock: Any = None
        """The socket (``ssl.SSLSocket`` or ``TlsInTls`` under TLS); None until connected."""
        self.generation = generation
        self.idle_until = 0.0
        """Resting in the pool: the pool's clock time after which it is closed, not used."""
        self._poller: Any = None

    def connect(self, route: Route, connect_s: float, at: float) -> None:
        """Open the connection: TCP, TLS to the proxy, CONNECT, TLS to the origin."""
        if route.proxied:
            try:
                self._reach_proxy(route, connect_s, at)
            except DeadlineExceeded:
                raise
            except OSError as exc:
                raise ProxyError(f"cannot go through the proxy {route.host}:{route.port}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        else:
            self.sock = _open_tcp(route.host, route.port, connect_s, at)
        sock = self.sock
        if route.tls is not None:
            sock.settimeout(left_of(at, connect_s))
            if route.tls.verify_mode == ssl.CERT_NONE:
                warnings.warn(f"Unverified HTTPS request to {route.server_name}: its certificate is "
                              "not checked", InsecureRequestWarning, stacklevel=2)
            if isinstance(sock, ssl.SSLSocket):  # an https proxy: TLS inside its TLS
                self.sock = TlsInTls(sock, route.tls, route.server_name, left_of(at, connect_s))
            else:
                self.sock = route.tls.wrap_socket(sock, server_hostname=route.server_name)
        self._poller = select.poll()
        self._poller.register(self.sock.fileno(), select.POLLIN)

    def _reach_proxy(self, route: Route, connect_s: float, at: float) -> None:
        """TCP (and TLS) to the proxy, and the CONNECT tunnel through it for an https origin."""
        self.sock = _open_tcp(route.host, route.port, connect_s, at)
        if route.proxy_tls is not None:
            self.sock.settimeout(left_of(at, connect_s))
            self.sock = route.proxy_tls.wrap_socket(self.sock, server_hostname=route.host)
        if route.tunnel is not None:
            open_tunnel(self, route.tunnel, route.proxy_headers, at, connect_s)

    def alive(self) -> bool:
        """Whether an idle connection can take a call: nothing (no FIN, no stray byte) arrived."""
        if self._poller is None or self._poller.poll(0):
            return False
        pending = getattr(self.sock, "pending", None)
        return not (pending is not None and pending())

    def write(self, data: bytes | bytearray | memoryview, at: float) -> None:
        """Send all of ``data`` before the deadline ``at``."""
        send_all(self.sock, data, at)

    def send_request(self, head: bytes, body: bytes | Iterable[bytes] | None, at: float) -> None:
        """The head and the body, the head joined to the body (or its first piece) when that
        is small: one write, one TCP segment. A larger piece is never copied to join it."""
        if body is None:
            self.write(head, at)
        elif isinstance(body, bytes | bytearray | memoryview):
            if len(body) <= CHUNK_BYTES:
                self.write(head + body, at)
            else:
                self.write(head, at)
                self.write(body, at)
        else:
            pending: bytes | None = head
            for piece in body:
                if pending is not None and len(piece) <= CHUNK_BYTES:
                    self.write(pending + piece, at)
                elif pending is not None:
                    self.write(pending, at)
                    self.write(piece, at)
                else:
                    self.write(piece, at)
                pending = None
            if pending is not None:
                self.write(pending, at)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        sock, self.sock, self._poller = self.sock, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def _open_tcp(host: str, port: int, connect_s: float, at: float) -> socket.socket:
    """TCP to the first address of ``host`` that takes it, each attempt bounded by what is left
    of the call (``socket.create_connection`` gives every address the whole timeout); the last
    attempt's error when none does."""
    error: OSError = ConnectionError(f"no address for {host}")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left_of(at, connect_s))
            sock.connect(address)
        except DeadlineExceeded:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _keep_alive(sock)
        return sock
    raise error


def _keep_alive(sock: socket.socket) -> None:
    """TCP keepalive, probing after ``KEEPALIVE_IDLE_S`` of silence where the platform lets it
    be set (the system's default waits two hours): a flow a firewall dropped ends the call."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", KEEPALIVE_EVERY_S),
                        ("TCP_KEEPCNT", KEEPALIVE_PROBES)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def idle_limit(keep_alive: str | None) -> float:
    """How long a connection may rest: ``IDLE_S``, or less when the answer's ``Keep-Alive``
    header says the server closes sooner (``timeout=5``: 4 s, a second's margin)."""
    if not keep_alive:
        return IDLE_S
    for part in keep_alive.split(","):
        name, _, value = part.partition("=")
        value = value.strip()
        if name.strip().lower() == "timeout" and 0 < len(value) <= 6 and value.isascii() and value.isdigit():
            return max(0.0, min(IDLE_S, int(value) - 1.0))
    return IDLE_S


class ConnectionPool:
    """Idle connections to one ``Route``, up to ``keep``; thread-safe.

    ``close`` drops the idle ones and marks those in use as old, so they are closed when
    their call hands them back; a later call connects again.
    """

    def __init__(self, route: Route, keep: int, watcher: Watcher | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.route = route
        self._clock = clock
        """What ``idle_until`` is measured on (a test's own clock)."""
        self._keep = max(1, keep)
        self._watcher = watcher
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._generation = 0

    def take(self, connect_s: float, at: float) -> Connection:
        """An idle connection still open, else a new one (connected, or the error why not)."""
        watcher = self._watcher
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
                generation = self._generation
            if conn is None:
                break
            if self._clock() < conn.idle_until and conn.alive():
                if watcher is not None:
                    watcher.taken(conn)
                return conn
            conn.close()  # rested too long, or closed by the server: never sent into
        conn = Connection(generation)
        if watcher is not None:
            watcher.taken(conn)
        try:
            conn.connect(self.route, connect_s, at)
        except BaseException:
            conn.close()
            raise
        if watcher is not None:
            watcher.connected(conn)
        return conn

    def give_back(self, conn: Connection, idle_s: float = IDLE_S) -> None:
        """Keep ``conn`` for the next call for up to ``idle_s`` (``idle_limit``), or close it
        (the pool is full, or was closed)."""
        conn.idle_until = self._clock() + idle_s
        with self._lock:
            if conn.generation == self._generation and len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use close when handed back."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
