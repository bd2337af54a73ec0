"""An SQS receive that another thread can cut short: the poller's stop.

SQS's long poll waits up to 20 s for a message, and the poller's thread waits on the socket
meanwhile; its stop would wait for the receive to end. ``Interrupter`` gives the receiver a way
out: ``interrupt()`` (from any thread) shuts down the socket of the call in progress, so its read
ends at once with a connection error, and makes every later call fail the same way before it
waits. It is one-shot: the receiver is not used again (the poller is stopping).

How it sees the socket: it is the receiver's ``http_pool.Watcher``: the receiver's connection
pool reports each connection it hands out (``taken``) and each one it connects
(``connected``). Nothing else changes: the same pools, TLS, proxies and deadlines as every
other SQS call.

What a cut costs: a message SQS had already put in the cut answer stays invisible for its
visibility timeout, then comes back (the same as a process killed during a receive); it is never
lost, and a long poll answers as soon as a message is there, so the window is the few
milliseconds of one answer in flight.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class Interrupter:
    """Cuts the calls of one receiver short; see the module doc."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Any = None
        self.interrupted = False

    def interrupt(self) -> None:
        """Cut the call in progress, if any, and every later one. Thread-safe, idempotent."""
        with self._lock:
            self.interrupted = True
        self.cut_current()  # a call taken meanwhile saw the flag and cut itself

    def cut_current(self) -> None:
        """Cut the connection of the last call (in progress, or idle in its pool since), and
        refuse no later one: the stop of the short calls, whose last deletes at a poller's
        release must still go out."""
        with self._lock:
            conn = self._current
        _cut(conn)

    def taken(self, conn: Any) -> None:
        """A pool handed ``conn`` to a call (it may have no socket yet)."""
        with self._lock:
            self._current = conn
            cut = self.interrupted
        if cut:
            _cut(conn)

    def connected(self, conn: Any) -> None:
        """``conn`` has just connected its socket."""
        with self._lock:
            cut = self.interrupted
        if cut:
            _cut(conn)


def _cut(conn: Any) -> None:
    sock = getattr(conn, "sock", None) if conn is not None else None
    while sock is not None and not isinstance(sock, socket.socket):
        sock = getattr(sock, "socket", None)  # TLS in TLS through an https proxy: tls_tunnel.TlsInTls
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed: nothing waits on it
        # The plain socket's shutdown, also under TLS: ``SSLSocket.shutdown`` would drop the
        # TLS state that the reading thread is using; this only ends the TCP stream under it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
