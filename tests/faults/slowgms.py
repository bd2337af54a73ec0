"""A GMS that is slow to accept writes: what keeps a real datahub CLI run going for a while.

An HTTP relay in front of the control plane. Reads (``GET /config``, aspect reads) pass at
once; ``POST /aspects?action=ingestProposal[Batch]`` waits until the test calls ``release()``
(or ``HOLD_LIMIT_S`` passes), then goes through. A recipe whose ``datahub-rest`` sink points
here therefore runs, really connected and really waiting, exactly as long as the test wants.
"""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

from executor.local.controlplane.http_base import JsonHandler, LoopbackServer

HOLD_LIMIT_S = 120.0
_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length"})


class SlowGms(LoopbackServer):
    """Relays to ``upstream`` (``http://host:port``), holding writes until ``release()``."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler, "slow-gms")
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.released = threading.Event()
        self.held = 0
        self.stop_hooks.append(self.released.set)

    def release(self) -> None:
        """Let every held and future write through."""
        self.released.set()


class _Handler(JsonHandler):
    server: SlowGms

    def do_GET(self) -> None:
        self._relay(b"")

    def do_POST(self) -> None:
        body = self.read_body()
        if body is None:
            return
        if "ingestProposal" in self.path and not self.server.released.is_set():
            self.server.held += 1
            self.server.released.wait(HOLD_LIMIT_S)
        self._relay(body)

    def _relay(self, body: bytes) -> None:
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            relay = {k: v for k, v in answer.getheaders() if k.lower() not in _DROP | {"content-type"}}
            self.send_bytes(answer.status, data, answer.getheader("Content-Type", "application/json"), relay)
        except (OSError, http.client.HTTPException):
            self.send_json(502, {"message": "upstream unavailable"})
        finally:
            conn.close()
