"""The SQS gateway: checks the lease of each request's access key, then forwards it to moto.

moto accepts any credentials and never enforces expiry, so the queue URLs the control plane
hands out point here. The gateway reads the access key id from the SigV4 ``Authorization``
header (or a presigned ``X-Amz-Credential``), answers unknown keys with
``InvalidClientTokenId`` and expired ones with ``ExpiredToken`` the way SQS does, refuses
queues of another pool with ``AccessDenied``, and forwards everything else unchanged.
The signature itself is not verified: the key id and its lease are the point here.

Latency: both the accepted sockets and the upstream connections to moto set ``TCP_NODELAY``, and
an answer leaves in one write (a buffered ``wfile``); each handler thread keeps one connection to
moto for as long as its client's connection lasts (``upstream.KeptConnection``). Without
``TCP_NODELAY`` and the one write, an answer written as headers then body waits for the client's
delayed ACK (Nagle), about 40 ms per SQS call, and the demo and the tests would see an SQS far
slower than it is. Error shape: for the JSON protocol (botocore's SQS default) an HTTP 400 with
``{"__type": "com.amazon.coral.service#...", "message": ...}`` and an ``x-amzn-query-error``
header carrying the query-compatible code, which botocore reports as
``e.response["Error"]["Code"]``; for the older query protocol the XML ``ErrorResponse`` with
HTTP 403 that AWS documents for SQS.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from loguru import logger

from executor.local.controlplane.http_base import JsonHandler, LoopbackServer
from executor.local.controlplane.leases import LeaseBook, LeaseState
from executor.local.controlplane.upstream import KeptConnection, NoDelayConnection, no_delay

_CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]+)/")
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "host"}
)
UPSTREAM_TIMEOUT_S = 60.0
"""Above SQS's 20 s long poll, so a waiting receive is never cut short."""

_ERRORS = {
    "ExpiredToken": ("ExpiredTokenException", "The security token included in the request is expired"),
    "InvalidClientTokenId": (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    "MissingAuthenticationToken": (
        "MissingAuthenticationTokenException",
        "Request is missing Authentication Token",
    ),
    "AccessDenied": ("AccessDeniedException", "Access to the resource is denied for this lease."),
}


def access_key_of(authorization: str, query: str) -> str | None:
    """The access key id of a SigV4 request (header or presigned query), or None."""
    match = _CREDENTIAL.search(authorization)
    if match:
        return match.group(1)
    values = parse_qs(query).get("X-Amz-Credential")
    if values:
        return values[0].split("/", 1)[0] or None
    return None


def queue_names_in(body: bytes, content_type: str, query: str) -> list[str]:
    """Queue names a request addresses (from QueueUrl / QueueName), for the pool check."""
    params: dict[str, object] = {}
    if "json" in content_type:
        try:
            loaded = json.loads(body or b"{}")
        except ValueError:
            loaded = {}
        params = loaded if isinstance(loaded, dict) else {}
    else:
        form = parse_qs(body.decode("utf-8", "replace")) | parse_qs(query)
        params = {k: v[0] for k, v in form.items() if v}
    names = []
    for key in ("QueueUrl", "QueueName"):
        value = params.get(key)
        if isinstance(value, str) and value:
            names.append(value.rstrip("/").rsplit("/", 1)[-1])
    return names


class GatewayServer(LoopbackServer):
    """Holds what the handler needs: the lease book, moto's address, the pools' queue names."""

    def __init__(
        self,
        host: str,
        port: int,
        leases: LeaseBook,
        upstream: str,
        allowed_queues: Callable[[str], set[str]],
    ) -> None:
        super().__init__((host, port), GatewayHandler, "controlplane-sqs-gateway")
        self.leases = leases
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.allowed_queues = allowed_queues
        self._upstream_lock = threading.Lock()
        self._upstream: set[http.client.HTTPConnection] = set()
        self.stop_hooks.append(self._cut_upstream)

    def open_upstream(self) -> http.client.HTTPConnection:
        """A tracked connection to moto, so ``stop()`` can cut a long poll in progress."""
        conn = NoDelayConnection(self.upstream_host, self.upstream_port, timeout=UPSTREAM_TIMEOUT_S)
        with self._upstream_lock:
            self._upstream.add(conn)
        return conn

    def close_upstream(self, conn: http.client.HTTPConnection) -> None:
        """Forget and close a connection."""
        with self._upstream_lock:
            self._upstream.discard(conn)
        conn.close()

    def _cut_upstream(self) -> None:
        """Cut every connection to moto: a long poll in progress ends now."""
        with self._upstream_lock:
            conns = list(self._upstream)
        for conn in conns:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)


class GatewayHandler(JsonHandler):
    """Checks one request's lease and forwards it to moto."""

    server: GatewayServer
    wbufsize = 64 * 1024
    """Buffered: headers and body leave in one write when the handler flushes after each request."""

    def setup(self) -> None:
        no_delay(self.request)
        super().setup()

    def handle(self) -> None:
        """Serve the client's connection with one kept connection to moto, closed with it (so
        moto's thread for it ends too)."""
        self.upstream = KeptConnection(
            self.server.open_upstream, self.server.close_upstream, lambda: self.server.stopping
        )
        try:
            super().handle()
        finally:
            self.upstream.close()

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        query = urlsplit(self.path).query  # the lease is checked before the body is read
        key = access_key_of(self.headers.get("Authorization", ""), query)
        if key is None:
            self._aws_error("MissingAuthenticationToken")
            return
        state, lease = self.server.leases.check(key)
        if state is LeaseState.UNKNOWN or lease is None:
            self._aws_error("InvalidClientTokenId")
            return
        if state is LeaseState.EXPIRED:
            logger.debug("refused an expired lease of pool {}", lease.pool_id)
            self._aws_error("ExpiredToken")
            return
        body = self.read_body()
        if body is None:
            return
        allowed = self.server.allowed_queues(lease.pool_id)
        content_type = self.headers.get("Content-Type", "")
        if any(name not in allowed for name in queue_names_in(body, content_type, query)):
            self._aws_error("AccessDenied")
            return
        self._forward(body)

    def _is_json_protocol(self) -> bool:
        return "json" in self.headers.get("Content-Type", "") or "X-Amz-Target" in self.headers

    def _aws_error(self, code: str) -> None:
        self.close_connection = True  # the request's body may be unread
        exception, message = _ERRORS[code]
        request_id = str(uuid.uuid4())
        if self._is_json_protocol():
            payload = {"__type": f"com.amazon.coral.service#{exception}", "message": message}
            headers = {"x-amzn-query-error": f"{code};Sender", "x-amzn-RequestId": request_id}
            body = json.dumps(payload).encode()
            self.send_bytes(400, body, "application/x-amz-json-1.0", headers)
            return
        xml = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        self.send_bytes(403, xml.encode(), "text/xml", {"x-amzn-RequestId": request_id})

    def _forward(self, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        headers["Host"] = f"{self.server.upstream_host}:{self.server.upstream_port}"
        headers["Content-Length"] = str(len(body))
        try:
            status, answer_headers, data = self.upstream.call(self.command, self.path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            log = logger.debug if self.server.stopping else logger.warning
            log("sqs gateway: moto did not answer: {}", exc)
            self.send_json(503, {"__type": "ServiceUnavailable", "message": "upstream unavailable"})
            return
        relay = {k: v for k, v in answer_headers if k.lower() not in _HOP_HEADERS}
        content_type = relay.pop("Content-Type", relay.pop("content-type", "application/octet-stream"))
        relay = {k: v for k, v in relay.items() if k.lower() not in ("content-length", "server", "date")}
        self.send_bytes(status, data, content_type, relay)
