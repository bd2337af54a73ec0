"""An https origin behind a proxy: the CONNECT tunnel, and TLS inside an https proxy's TLS.

``open_tunnel`` asks the proxy for a tunnel to ``host:port`` (with the proxy URL's
credentials as ``Proxy-Authorization``, as ``requests`` sent them) and reads its answer with
``http_answer``, bounded like any call. Over an https:// proxy the origin's TLS runs
inside the proxy's: ``ssl`` cannot wrap an ``SSLSocket`` again, so ``TlsInTls`` drives an
``SSLObject`` over memory buffers on top of it (what urllib3's ``SSLTransport`` did).
"""

from __future__ import annotations

import ssl
from typing import Any

from executor.datahub.bounded_http import left_of, response_on

_RECORD_BYTES = 16 * 1024 + 512


def open_tunnel(conn: Any, target: str, proxy_headers: tuple[tuple[str, str], ...], at: float,
                connect_s: float) -> None:
    """``CONNECT target`` on ``conn`` (a ``http_pool.Connection``); OSError unless the proxy
    answers 2xx."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    lines += [f"{name}: {value}" for name, value in proxy_headers]
    conn.sock.settimeout(left_of(at, connect_s))
    conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    response = response_on(conn.sock, "CONNECT", at, connect_s)
    if not 200 <= response.status < 300:
        raise OSError(f"Tunnel connection failed: {response.status} {response.reason}")


class TlsInTls:
    """The origin's TLS over an already-TLS socket to the proxy; socket-like for the pool.

    ``socket``: the proxy's socket, which ``interrupt`` shuts down to cut a call.
    """

    def __init__(self, sock: ssl.SSLSocket, context: ssl.SSLContext, server_name: str) -> None:
        self.socket = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_name)
        self._step(self._tls.do_handshake)

    def _step(self, action: Any, *args: Any) -> Any:
        """``action`` run to completion, records moved to and from the proxy's socket."""
        while True:
            try:
                result = action(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.socket.recv(_RECORD_BYTES)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            except ssl.SSLZeroReturnError:
                self._flush()
                return 0
            self._flush()
            return result

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.socket.sendall(data)

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self._step(self._tls.write, view):]

    def recv_into(self, buffer: Any) -> int:
        return int(self._step(self._tls.read, len(buffer), buffer))

    def pending(self) -> int:
        return self._tls.pending() + self._incoming.pending

    def settimeout(self, timeout: float | None) -> None:
        self.socket.settimeout(timeout)

    def fileno(self) -> int:
        return self.socket.fileno()

    def getpeercert(self) -> Any:
        return self._tls.getpeercert()

    def close(self) -> None:
        self.socket.close()

