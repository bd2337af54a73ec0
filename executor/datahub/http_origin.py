"""Bounded HTTP calls to one origin (GMS) over kept-alive connections, on ``urllib3`` directly.

Why not ``requests``: for every call a ``requests.Session`` merges settings with the
environment (it scans ``os.environ`` for proxies twice and looks up ``.netrc``), keeps cookies
and builds a prepared request, about 1 ms of CPU on top of urllib3's own work per GMS call
(``bench/gms_call_cpu.py``); the executor makes five GMS calls a task. An ``Origin`` decides its
TLS settings and its proxy once, when it is made, for its one URL, and each call then goes
straight to its urllib3 connection pool, which is safe for concurrent callers (a pool's actors
and Tasks share one ``Origin``).

No cookie is kept: urllib3 has no cookie jar, so a ``Set-Cookie`` from GMS never reaches
another call or another client. Redirects are not followed (GMS's API does not redirect, and a
redirect would carry the token to wherever it points).
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
from urllib3 import PoolManager, ProxyManager
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import LocationValueError
from urllib3.util import Timeout, make_headers, parse_url
from urllib3.util.ssl_ import create_urllib3_context

from executor.datahub.bounded_http import POOLS, CallLimits, deadline, read_capped
from executor.datahub.proxies import proxy_for_url

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Read when ``verify`` is True, as ``requests`` read them (an operator's corporate CA)."""


@dataclass(frozen=True)
class Answer:
    """A call's status, its (capped, decoded) body and its headers (case-insensitive)."""

    status: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class Origin:
    """Connections to the scheme, host and port of ``url``, with TLS and proxy fixed at birth.

    ``verify``: True checks the certificate and host name against ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE`` when set, else certifi's bundle (what ``requests`` did); a path (file or
    directory) trusts only that, whatever the environment says; False checks nothing.
    ``proxies``: ``executor.datahub.proxies.proxy_for_url`` (configured entries win, None means
    direct, else ``HTTP(S)_PROXY`` / ``NO_PROXY``); only http:// and https:// proxies (a
    SOCKS proxy fails every call with a ``TransportError`` saying so, as it did through
    requests without PySocks). ``connections``: idle connections kept (one
    per thread that may call at the same time; more are made when needed, and dropped after).
    ``pools``: urllib3 pool classes, ``bounded_http.POOLS`` or subclasses of them (the SQS
    receiver's ``interrupt.tracked_pools``, which report their connections).
    """

    def __init__(self, url: str, *, verify: bool | str = True,
                 proxies: Mapping[str, str | None] | None = None, connections: int = 2,
                 pools: Mapping[str, type[HTTPConnectionPool]] = POOLS) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.proxy = proxy_for_url(self.url, proxies)
        """The proxy URL its calls go through, None for direct."""
        self._prefix = self.url if self.proxy and parts.scheme == "http" else parts.path.rstrip("/")
        """Before each call's path: the URL's own path (``https://x.acryl.io/gms``), or the
        whole URL for a call through an HTTP proxy that is not tunnelled."""
        pool_kw: dict[str, Any] = {"maxsize": max(1, connections), "block": False, "retries": False}
        self._manager: PoolManager | None = None
        self._pool: HTTPConnectionPool | None = None
        self._refusal: str | None = None
        """Why no call can be made (a SOCKS proxy, an unreadable CA bundle): each call fails with
        it, as a call through requests did, rather than the making of the client. Kept as text:
        one exception raised again and again would collect every failed call's frames (their
        headers and bodies) in its traceback."""
        try:
            if parts.scheme == "https":
                pool_kw.update(tls_settings(verify))
            self._manager = pool_manager(self.proxy, pool_kw, pools)
            self._pool = self._manager.connection_from_url(self.url)
        except (LocationValueError, OSError) as exc:
            self._refusal = f"{type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        return f"Origin({self.url!r})"

    @property
    def refusal(self) -> str | None:
        """Why no call can be made (then every call raises ``LocationValueError``), else None."""
        return self._refusal

    def call(self, method: str, path: str, limits: CallLimits, *, headers: Mapping[str, str],
             body: bytes | Iterable[bytes] | None = None) -> Answer:
        """One call, bounded by ``limits`` (``bounded_http``); urllib3's errors and
        ``DeadlineExceeded`` / ``TooLarge`` pass through. An iterable ``body`` needs its
        ``Content-Length`` in ``headers`` (each item is one write, as it is iterated: an
        ``ingestProposal`` body comes in slices of up to 64 KiB, ``datahub.proposal``)."""
        pool = self._pool if self._pool is not None else self._reopen()
        with deadline(limits.total_s):
            response = pool.urlopen(
                method, self._prefix + path, body=body, headers=headers, retries=False,
                redirect=False, assert_same_host=False, preload_content=False,
                timeout=Timeout(connect=limits.connect_s, read=limits.total_s),
            )
            try:
                content = read_capped(response, limits.max_bytes)
            except BaseException:
                response.close()  # the rest of the answer is unread: the connection goes
                response.release_conn()
                raise
            response.release_conn()
            return Answer(response.status, content, response.headers)

    def close(self) -> None:
        """Close the idle connections (calls in flight finish; a later call connects again)."""
        self._pool = None
        if self._manager is not None:
            self._manager.clear()

    def _reopen(self) -> HTTPConnectionPool:
        """A new connection pool after ``close``; or the reason none can be made."""
        if self._manager is None:
            raise LocationValueError(self._refusal or "no connection pool")
        self._pool = pool = self._manager.connection_from_url(self.url)
        return pool


def tls_settings(verify: bool | str) -> dict[str, Any]:
    """urllib3 pool settings for ``verify``, its CA set loaded once into one ``SSLContext``."""
    if verify is False:
        return {"ssl_context": create_urllib3_context(cert_reqs=ssl.CERT_NONE),
                "cert_reqs": "CERT_NONE", "assert_hostname": False}
    where = verify if isinstance(verify, str) else _environment_bundle() or certifi.where()
    return {"ssl_context": _verifying_context(where), "cert_reqs": "CERT_REQUIRED"}


_CONTEXTS: dict[str, tuple[int, ssl.SSLContext]] = {}
_CONTEXTS_LOCK = threading.Lock()


def _verifying_context(where: str) -> ssl.SSLContext:
    """A context that trusts the CA file or directory ``where``, shared while it is unchanged.

    Why shared: loading certifi's bundle costs about 25 ms of CPU, and each lease grant makes
    an SQS queue (two connection pools) and each pool a GMS ``Origin``. urllib3 only sets a
    given context's ``verify_mode`` to the ``cert_reqs`` its pool was made with, always
    ``CERT_REQUIRED`` here, so pools can share one. A changed file (its mtime) is loaded again;
    one that cannot be read raises ``OSError`` and is not remembered.
    """
    stamp = os.stat(where).st_mtime_ns
    with _CONTEXTS_LOCK:
        known = _CONTEXTS.get(where)
    if known is not None and known[0] == stamp:
        return known[1]
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    if os.path.isdir(where):
        context.load_verify_locations(capath=where)
    else:
        context.load_verify_locations(cafile=where)
    with _CONTEXTS_LOCK:
        _CONTEXTS[where] = (stamp, context)
    return context


def _environment_bundle() -> str | None:
    for name in CA_BUNDLE_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


def pool_manager(proxy: str | None, pool_kw: dict[str, Any],
                 pools: Mapping[str, type[HTTPConnectionPool]] = POOLS) -> PoolManager:
    """A manager whose pools honour ``deadline()``; through ``proxy`` when there is one, with
    the proxy URL's user and password sent as ``Proxy-Authorization`` (as ``requests`` did).
    ``pools``: ``POOLS`` or subclasses of them (the SQS receiver's, which report their sockets)."""
    manager: PoolManager
    if proxy is None:
        manager = PoolManager(num_pools=2, **pool_kw)
    else:
        auth = parse_url(proxy).auth
        headers = make_headers(proxy_basic_auth=_unquote(auth)) if auth else None
        manager = ProxyManager(proxy, num_pools=2, proxy_headers=headers, **pool_kw)
    manager.pool_classes_by_scheme = dict(pools)  # type: ignore[assignment]
    return manager


def _unquote(auth: str) -> str:
    user, _, password = auth.partition(":")
    return f"{unquote(user)}:{unquote(password)}"
