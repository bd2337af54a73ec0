"""One SQS call: AWS's JSON 1.0 protocol over urllib3, SigV4-signed, without a botocore client.

Why not a botocore client: its CPU. A short SQS call through a warm client cost about 2 ms of
the caller's thread, most of it outside the HTTP itself (event hooks, parameter validation,
the endpoint rule set, the user agent, the response parser, the retry handler), and the
poller makes two to four such calls a task. Here a call is a JSON body, a SigV4 signature
and one ``urlopen`` on a kept-alive urllib3 pool (``bench/sqs_calls.py`` has the figures).

What a call sends is what botocore sends for SQS: ``POST /`` with ``X-Amz-Target:
AmazonSQS.<Op>``, ``Content-Type: application/x-amz-json-1.0`` and ``x-amzn-query-mode: true``
(so errors carry their query-protocol codes), signed (SigV4, ``executor.queue.sigv4``, checked
against botocore's signer) for service ``sqs`` in the lease's region with the lease's credentials.

Connections: TLS and proxies as the GMS client decides them (``datahub.http_origin`` and
``datahub.proxies``), with botocore's conventions: ``AWS_CA_BUNDLE``, else
``REQUESTS_CA_BUNDLE``, else certifi's bundle; a configured proxy mapping, else
``HTTP(S)_PROXY`` / ``NO_PROXY`` (CONNECT for https). Every attempt is bounded as a whole
(``bounded_http.deadline``: connect, send, wait and read) and its answer is capped
(``max_bytes``): a broken or hostile endpoint can neither hold a call nor fill the memory.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
from collections.abc import Mapping
from typing import Any

import certifi
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError, LocationValueError
from urllib3.util import Timeout

from executor.datahub.bounded_http import POOLS, DeadlineExceeded, TooLarge, deadline, read_capped
from executor.datahub.http_origin import pool_manager, tls_settings
from executor.datahub.lease import Lease
from executor.datahub.proxies import proxy_for_url
from executor.errors import ThrottledError, TransportError
from executor.queue.sigv4 import SigV4Signer, canonical_host
from executor.queue.sqs_errors import mapped_error, parse_error

CONTENT_TYPE = "application/x-amz-json-1.0"
USER_AGENT = "remote-executor (sqs-json)"
RETRY_JITTER_S = 1.0
"""Before the one retry of a short call: a random wait up to this (botocore's standard mode)."""
_TRANSIENT = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})


def ca_bundle() -> str:
    """The CA bundle botocore would trust for SQS: ``AWS_CA_BUNDLE``, ``REQUESTS_CA_BUNDLE``,
    else certifi's."""
    return os.environ.get("AWS_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()


class SqsWire:
    """Signed JSON calls to one SQS endpoint with one lease's credentials.

    ``attempts``: 1 (the receive: the poller backs off itself) or 2 (one retry, after a
    random wait, on a transport error, a 5xx or throttling). ``pools``: urllib3 pool classes
    (``bounded_http.POOLS`` or subclasses, e.g. the receiver's ``interrupt.tracked_pools``).
    """

    def __init__(self, lease: Lease, endpoint: str, *, proxies: Mapping[str, str | None] | None,
                 connect_timeout_s: float, attempts: int,
                 pools: Mapping[str, type[HTTPConnectionPool]] = POOLS) -> None:
        self._url = endpoint.rstrip("/") + "/"
        self._signer = SigV4Signer(lease.access_key_id, lease.secret_access_key, lease.session_token,
                                   lease.region, "sqs", canonical_host(self._url))
        self._connect_s = connect_timeout_s
        self._attempts = attempts
        proxy = proxy_for_url(self._url, proxies)
        self._path = self._url if proxy and self._url.startswith("http:") else "/"
        """An HTTP proxy that is not tunnelled gets the whole URL; otherwise the path."""
        self._refusal: str | None = None
        self._pool: HTTPConnectionPool | None = None
        pool_kw: dict[str, Any] = {"maxsize": 2, "block": False, "retries": False}
        try:
            if self._url.startswith("https:"):
                pool_kw.update(tls_settings(ca_bundle()))
            self._manager = pool_manager(proxy, pool_kw, pools)
            self._pool = self._manager.connection_from_url(self._url)
        except (LocationValueError, OSError) as exc:  # a SOCKS proxy, an unreadable CA bundle
            self._refusal = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Close the idle connections (a later call connects again, as a botocore client did)."""
        if self._pool is not None:
            self._pool = None
            self._manager.clear()

    def call(self, what: str, operation: str, payload: Mapping[str, Any], *,
             wait_s: float, max_bytes: int) -> dict[str, Any]:
        """SQS's answer to ``AmazonSQS.<operation>`` with ``payload``, or the executor's error
        (``sqs_errors``; ``what`` names the call in it). ``wait_s``: how long SQS may take to
        answer (a long poll's wait plus a margin), on top of the connect timeout."""
        body = json.dumps(payload).encode()
        for attempt in range(1, self._attempts + 1):
            try:
                return self._attempt(what, operation, body, wait_s, max_bytes)
            except (TransportError, ThrottledError):
                if attempt >= self._attempts:
                    raise
            time.sleep(random.random() * RETRY_JITTER_S)  # jitter, not a secret
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(self, what: str, operation: str, body: bytes, wait_s: float,
                 max_bytes: int) -> dict[str, Any]:
        pool = self._pool
        if pool is None:
            if self._refusal is not None:
                raise TransportError(f"SQS {what} not made: {self._refusal}")
            pool = self._pool = self._manager.connection_from_url(self._url)
        headers = self._signer.headers(body, {
            "X-Amz-Target": "AmazonSQS." + operation, "Content-Type": CONTENT_TYPE,
            "x-amzn-query-mode": "true",
        })
        headers["User-Agent"] = USER_AGENT  # unsigned, as botocore leaves it
        total_s = self._connect_s + wait_s
        try:
            with deadline(total_s):
                response = pool.urlopen(
                    "POST", self._path, body=body, headers=headers, retries=False, redirect=False,
                    assert_same_host=False, preload_content=False,
                    timeout=Timeout(connect=self._connect_s, read=total_s),
                )
                try:
                    content = read_capped(response, max_bytes)
                except BaseException:
                    response.close()  # the rest of the answer is unread: the connection goes
                    raise
                finally:
                    response.release_conn()
        except (HTTPError, OSError, http.client.HTTPException, DeadlineExceeded, TooLarge) as exc:
            raise TransportError(f"SQS {what} failed: {type(exc).__name__}: {str(exc)[:300]}") from None
        return _answer(what, response.status, response.headers, content)


def _answer(what: str, status: int, headers: Mapping[str, str], content: bytes) -> dict[str, Any]:
    """A successful call's JSON, or the error its answer stands for."""
    if status != 200:
        code, message = parse_error(status, headers, content)
        if code in _TRANSIENT:
            raise TransportError(f"SQS {what} failed: {code}: {message[:300]}")
        raise mapped_error(what, code, status, message)
    try:
        parsed = json.loads(content) if content else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise TransportError(f"SQS {what} failed: the answer is not a JSON object")
    return parsed
