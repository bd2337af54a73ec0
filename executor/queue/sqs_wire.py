"""One SQS call: AWS's JSON 1.0 protocol over bare HTTP/1.1, SigV4-signed, without a botocore client.

Why not a botocore client: its CPU. A short SQS call through a warm client cost about 2 ms of
the caller's thread, most of it outside the HTTP itself (event hooks, parameter validation,
the endpoint rule set, the user agent, the response parser, the retry handler), and the
poller makes two to four such calls a task. Here a call is a JSON body, a SigV4 signature
and one write and read on a kept-alive connection (``http_origin``; ``bench/sqs_calls.py`` has
the figures).

What a call sends is what botocore sends for SQS: ``POST /`` with ``X-Amz-Target:
AmazonSQS.<Op>``, ``Content-Type: application/x-amz-json-1.0`` and ``x-amzn-query-mode: true``
(so errors carry their query-protocol codes), signed (SigV4, ``executor.queue.sigv4``, checked
against botocore's signer) for service ``sqs`` in the lease's region with the lease's credentials.

Connections: a ``datahub.http_origin.Origin``, the GMS client's, so the same code decides TLS,
proxies, deadlines and caps, with botocore's conventions: ``AWS_CA_BUNDLE``, else
``REQUESTS_CA_BUNDLE``, else certifi's bundle; a configured proxy mapping, else
``HTTP(S)_PROXY`` / ``NO_PROXY`` (CONNECT for https). Every attempt is bounded as a whole
(``bounded_http``: connect, send, wait and read) and its answer is capped
(``max_bytes``): a broken or hostile endpoint can neither hold a call nor fill the memory.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import certifi

from executor.datahub.bounded_http import CALL_ERRORS, CallLimits, TooLarge
from executor.datahub.http_origin import Origin
from executor.datahub.http_pool import Watcher
from executor.datahub.lease import Lease
from executor.errors import ThrottledError, TransportError
from executor.queue.sigv4 import SigV4Signer, canonical_host
from executor.queue.sqs_errors import mapped_error, parse_error

CONTENT_TYPE = "application/x-amz-json-1.0"
USER_AGENT = "remote-executor (sqs-json)"
RETRY_JITTER_S = 1.0
"""Before the one retry of a short call: a random wait up to this (botocore's standard mode)."""


def ca_bundle() -> str:
    """The CA bundle botocore would trust for SQS: ``AWS_CA_BUNDLE``, ``REQUESTS_CA_BUNDLE``,
    else certifi's."""
    return os.environ.get("AWS_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()


class SqsWire:
    """Signed JSON calls to one SQS endpoint with one lease's credentials.

    ``attempts``: 1 (the receive: the poller backs off itself) or 2 (one retry, after a
    random wait, on a transport error, a 5xx or throttling). ``watcher``: told which connection
    each call uses (the receiver's ``interrupt.Interrupter``), handed to its
    ``http_origin.Origin``, which makes and keeps the connections.
    """

    def __init__(self, lease: Lease, endpoint: str, *, proxies: Mapping[str, str | None] | None,
                 connect_timeout_s: float, attempts: int,
                 watcher: Watcher | None = None) -> None:
        url = endpoint.rstrip("/") + "/"
        self._signer = SigV4Signer(lease.access_key_id, lease.secret_access_key, lease.session_token,
                                   lease.region, "sqs", canonical_host(url))
        self._connect_s = connect_timeout_s
        self._attempts = attempts
        self._origin = Origin(url, verify=ca_bundle(), proxies=proxies, watcher=watcher)

    def close(self) -> None:
        """Close the idle connections (a later call connects again, as a botocore client did)."""
        self._origin.close()

    def call(self, what: str, operation: str, payload: Mapping[str, Any], *,
             wait_s: float, max_bytes: int, give_up: Callable[[], bool] | None = None) -> dict[str, Any]:
        """SQS's answer to ``AmazonSQS.<operation>`` with ``payload``, or the executor's error
        (``sqs_errors``; ``what`` names the call in it). ``wait_s``: how long SQS may take to
        answer (a long poll's wait plus a margin), on top of the connect timeout. ``give_up``:
        asked before a retry; True makes the last error the answer (a stop)."""
        refusal = self._origin.refusal
        if refusal is not None:  # a SOCKS proxy, an unreadable CA bundle: no retry changes it
            raise TransportError(f"SQS {what} not made: {refusal}")
        body = json.dumps(payload).encode()
        limits = CallLimits(total_s=self._connect_s + wait_s, connect_s=self._connect_s,
                            max_bytes=max_bytes)
        made = 0
        while True:
            made += 1
            try:
                return self._attempt(what, operation, body, limits)
            except (TransportError, ThrottledError):
                if made >= self._attempts or (give_up is not None and give_up()):
                    raise
                time.sleep(random.random() * RETRY_JITTER_S)  # jitter, not a secret

    def _attempt(self, what: str, operation: str, body: bytes, limits: CallLimits) -> dict[str, Any]:
        headers = self._signer.headers(body, {
            "X-Amz-Target": "AmazonSQS." + operation, "Content-Type": CONTENT_TYPE,
            "x-amzn-query-mode": "true",
        })
        headers["User-Agent"] = USER_AGENT  # unsigned, as botocore leaves it
        try:
            answer = self._origin.call("POST", "/", limits, headers=headers, body=body)
        except (*CALL_ERRORS, TooLarge) as exc:
            raise TransportError(f"SQS {what} failed: {type(exc).__name__}: {str(exc)[:300]}") from None
        return _answer(what, answer.status, answer.headers, answer.content)


def _answer(what: str, status: int, headers: Mapping[str, str], content: bytes) -> dict[str, Any]:
    """A successful call's JSON, or the error its answer stands for."""
    if status != 200:
        code, message = parse_error(status, headers, content)
        raise mapped_error(what, code, status, message)
    try:
        parsed = json.loads(content) if content else {}
    except (ValueError, RecursionError):  # too deep a nesting is no answer either
        parsed = None
    if not isinstance(parsed, dict):
        raise TransportError(f"SQS {what} failed: the answer is not a JSON object")
    return parsed
