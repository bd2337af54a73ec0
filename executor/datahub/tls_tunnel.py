"""An https origin behind a proxy: the CONNECT tunnel, and TLS inside an https proxy's TLS.

``open_tunnel`` asks the proxy for a tunnel to ``host:port`` (with the proxy URL's
credentials as ``Proxy-Authorization``, as ``requests`` sent them) and reads its answer with
``http_answer``, bounded like any call. Over an https:// proxy the origin's TLS runs
inside the proxy's: ``ssl`` cannot wrap an ``SSLSocket`` again, so ``TlsInTls`` drives an
``SSLObject`` over memory buffers on top of it (what urllib3's ``SSLTransport`` did).
"""

from __future__ import annotations

import ssl
import time
from typing import Any

from executor.datahub.bounded_http import left_of, overran, response_on, send_all

_RECORD_BYTES = 16 * 1024 + 512


def open_tunnel(conn: Any, target: str, proxy_headers: tuple[tuple[str, str], ...], at: float,
                connect_s: float) -> None:
    """``CONNECT target`` on ``conn`` (a ``http_pool.Connection``); OSError unless the proxy
    answers 2xx and nothing after it (the origin's TLS speaks first: bytes the proxy sent past
    its answer would be lost)."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    lines += [f"{name}: {value}" for name, value in proxy_headers]
    send_all(conn.sock, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), at, connect_s)
    response = response_on(conn.sock, "CONNECT", at, connect_s)
    if not 200 <= response.status < 300:  # the reason is the proxy's text: bounded, quoted
        raise OSError(f"Tunnel connection failed: {response.status} {response.reason[:100]!r}")
    if overran(response):
        raise OSError("the proxy sent bytes past its answer to CONNECT")


class TlsInTls:
    """The origin's TLS over an already-TLS socket to the proxy; socket-like for the pool.

    ``socket``: the proxy's socket, which ``interrupt`` shuts down to cut a call.
    ``settimeout(t)`` sets a deadline ``t`` from now: one ``send`` or ``recv_into`` may take
    several reads and writes of records on the proxy's socket, and each waits at most what is
    left of it (a peer dripping a byte at a time cannot hold a call past its deadline).
    """

    def __init__(self, sock: ssl.SSLSocket, context: ssl.SSLContext, server_name: str,
                 timeout: float | None) -> None:
        self.socket = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_name)
        self._until: float | None = None
        self.settimeout(timeout)
        self._step(self._tls.do_handshake)

    def _step(self, action: Any, *args: Any) -> Any:
        """``action`` run to completion, records moved to and from the proxy's socket."""
        while True:
            try:
                result = action(*args)
            except ssl.SSLWantReadError:
                self._flush()
                self._bound()
                data = self.socket.recv(_RECORD_BYTES)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        view = memoryview(self._outgoing.read())
        while view:
            self._bound()
            view = view[self.socket.send(view):]

    def _bound(self) -> None:
        """The proxy socket's timeout for its next step: what is left until the deadline."""
        self.socket.settimeout(left_of(self._until, None))

    def send(self, data: bytes | bytearray | memoryview) -> int:
        return int(self._step(self._tls.write, data))

    def recv_into(self, buffer: Any) -> int:
        try:
            return int(self._step(self._tls.read, len(buffer), buffer))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0  # the end of the stream, with or without close_notify (as ``SSLSocket``)

    def pending(self) -> int:
        return self._tls.pending() + self._incoming.pending

    def settimeout(self, timeout: float | None) -> None:
        self._until = None if timeout is None else time.monotonic() + timeout

    def fileno(self) -> int:
        return self.socket.fileno()

    def close(self) -> None:
        self.socket.close()
