"""Bounded HTTP calls to one origin (GMS, an SQS endpoint) over kept-alive connections.

Why connections of our own (``http_pool``: sockets, ``ssl``, ``http_answer``'s parser), not
urllib3 or ``requests``: CPU per call. A ``requests.Session`` merges settings with the
environment on every call (about 1 ms); urllib3 then still built a request and a response
object, a header dict, polled the connection, checked every ``putheader`` and wrapped the
answer, 0.5-1.0 ms of a call against about 0.5 ms for the same signed POST on one kept-alive
``http.client`` connection, and a task makes about seven calls (SQS receive and delete, five
to GMS). Here an ``Origin`` decides its TLS settings and its proxy once, when it is made; a
call writes its head and body in one write and reads the answer with a small parser of
its own (``http_answer``: ``http.client``'s goes through the ``email`` package, about a third
of a short call), under one total deadline and a size cap (``bounded_http``). Client CPU per
call (``bench/gms_call_cpu.py``, ``bench/sqs_calls.py``): GMS 0.43-0.65 ms on urllib3,
0.10-0.27 ms here; SQS 0.84-0.98 ms on urllib3, 0.30-0.43 ms here.

No cookie is kept (there is no cookie jar), so a ``Set-Cookie`` from GMS never reaches
another call or another client. Redirects are not followed (GMS's API does not redirect, and a
redirect would carry the token to wherever it points). Nothing is retried: a call that may have
reached the server is its caller's to retry (``gms``, ``sqs_wire``).
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

import certifi

from executor.datahub.bounded_http import CALL_ERRORS, CallLimits, OriginRefused, read_capped, response_on
from executor.datahub.http_answer import Headers
from executor.datahub.http_pool import Connection, ConnectionPool, Route, Watcher, idle_limit
from executor.datahub.proxies import proxy_for_url

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Read when ``verify`` is True, as ``requests`` read them (an operator's corporate CA)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_BAD_NAME = re.compile(r"[\x00-\x20:\x7f]")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters (a tab aside): a line break would smuggle a header, the rest no server takes."""
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_CUT_WHILE_SENDING = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)
"""A server that answers before it read the whole body (a 401, a 413) and closes."""


class BadRequestHead(http.client.HTTPException, ValueError):
    """A header or path the request cannot carry (a control or non-Latin-1 character); a call
    error like any other (``CALL_ERRORS``), naming the header, never its value."""


@dataclass(frozen=True)
class Answer:
    """A call's status, its (capped, decoded) body and its headers (case-insensitive)."""

    status: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=Headers, repr=False)


class Origin:
    """Connections to the scheme, host and port of ``url``, with TLS and proxy fixed at birth.

    ``verify``: True checks the certificate and host name against ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE`` when set, else certifi's bundle (what ``requests`` did); a path (file or
    directory) trusts only that, whatever the environment says; False checks nothing.
    ``proxies``: ``executor.datahub.proxies.proxy_for_url`` (configured entries win, None means
    direct, else ``HTTP(S)_PROXY`` / ``NO_PROXY``); only http:// and https:// proxies (a
    SOCKS proxy fails every call with ``OriginRefused`` saying so, as it did through
    requests without PySocks). ``connections``: idle connections kept (one per thread that may
    call at the same time; more are made when needed, and dropped after). ``watcher``: told
    which connection each call uses (the SQS receiver's ``interrupt.Interrupter``).
    """

    def __init__(self, url: str, *, verify: bool | str = True,
                 proxies: Mapping[str, str | None] | None = None, connections: int = 2,
                 watcher: Watcher | None = None) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.proxy = proxy_for_url(self.url, proxies)
        """The proxy URL its calls go through, None for direct."""
        forwarded = self.proxy is not None and parts.scheme == "http"
        self._prefix = self.url if forwarded else parts.path.rstrip("/")
        """Before each call's path: the URL's own path (``https://x.acryl.io/gms``), or the
        whole URL for a call through an HTTP proxy that is not tunnelled."""
        self._keep, self._watcher = connections, watcher
        self._host_line = b""
        self._extra = b""
        """Head lines every call carries: the proxy's credentials on a forwarded call."""
        self._route: Route | None = None
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._refusal: str | None = None
        """Why no call can be made (a SOCKS proxy, an unreadable CA bundle): each call fails with
        it, as a call through requests did, rather than the making of the client. Kept as text:
        one exception raised again and again would collect every failed call's frames (their
        headers and bodies) in its traceback."""
        try:
            self._route = _route(parts, self.proxy, verify)
            self._host_line = f"Host: {_host_header(parts)}\r\n".encode("ascii")
            if forwarded:
                self._extra = "".join(f"{n}: {v}\r\n" for n, v in self._route.proxy_headers).encode("latin-1")
        except (ValueError, OSError) as exc:
            self._refusal = f"{type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        return f"Origin({self.url!r})"

    @property
    def refusal(self) -> str | None:
        """Why no call can be made (then every call raises ``OriginRefused``), else None."""
        return self._refusal

    def call(self, method: str, path: str, limits: CallLimits, *, headers: Mapping[str, str],
             body: bytes | Iterable[bytes] | None = None) -> Answer:
        """One call, bounded by ``limits`` (``bounded_http``); ``bounded_http.CALL_ERRORS`` and
        ``TooLarge`` pass through. An iterable ``body`` needs its ``Content-Length`` in
        ``headers`` (each item is one write, as it is iterated: an ``ingestProposal`` body comes
        in slices of up to 64 KiB, ``datahub.proposal``)."""
        at = time.monotonic() + limits.total_s
        head = self._head(method, path, headers, body)
        pool = self._pool or self._open()
        conn = pool.take(limits.connect_s, at)
        try:
            try:
                conn.send_request(head, body, at)
            except _CUT_WHILE_SENDING as cut:
                return _early_answer(conn, method, limits.max_bytes, at, cut)
            response = response_on(conn.sock, method, at, None)
            content = read_capped(response, limits.max_bytes)
        except BaseException:
            conn.close()  # the rest of the answer is unread, or the request half sent
            raise
        if response.will_close:
            conn.close()
        else:
            pool.give_back(conn, idle_limit(response.headers.get("keep-alive")))
        return Answer(response.status, content, response.headers)

    def close(self) -> None:
        """Close the idle connections (calls in flight finish; a later call connects again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _open(self) -> ConnectionPool:
        """The connection pool (again after ``close``); or the reason none can be made."""
        if self._route is None:
            raise OriginRefused(self._refusal or "no route")
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(self._route, self._keep, self._watcher)
            return self._pool

    def _head(self, method: str, path: str, headers: Mapping[str, str],
              body: bytes | Iterable[bytes] | None) -> bytes:
        """The request line and headers; a control character in a name, value or the path is
        refused (``BadRequestHead``: no header can smuggle another), a bytes body gets its
        ``Content-Length``."""
        if _BAD_TARGET.search(path):
            raise BadRequestHead("the path holds a space or a control character")
        lines = [f"{method} {self._prefix}{path} HTTP/1.1\r\n"]
        for name, value in headers.items():
            if not name or _BAD_NAME.search(name) or _BAD_VALUE.search(value):
                raise BadRequestHead(f"header {name[:40]!r} holds a control character or a colon")
            lines.append(f"{name}: {value}\r\n")
        named = {name.lower() for name in headers}
        if "content-length" not in named:
            if isinstance(body, bytes | bytearray | memoryview):
                lines.append(f"Content-Length: {len(body)}\r\n")
            elif body is None and method in _WITH_BODY:
                lines.append("Content-Length: 0\r\n")
            elif body is not None:
                raise ValueError("an iterable body needs its Content-Length")
        try:
            head = "".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            raise BadRequestHead("a header or the path holds a character beyond Latin-1") from None
        host = b"" if "host" in named else self._host_line
        return head + host + self._extra + b"\r\n"


def _early_answer(conn: Connection, method: str, max_bytes: int, at: float, cut: OSError) -> Answer:
    """The answer a server sent before it stopped reading the request (GMS's 401 to an expired
    token under a large ``ingestProposal``, a 413), read under the same deadline, as urllib3
    read it; ``cut`` (the send's error) when there is none. The connection is closed either way."""
    try:
        response = response_on(conn.sock, method, at, None)
        content = read_capped(response, max_bytes)
    except CALL_ERRORS:
        raise cut from None
    finally:
        conn.close()
    return Answer(response.status, content, response.headers)


def _route(parts: SplitResult, proxy: str | None, verify: bool | str) -> Route:
    """Where a connection goes and how, for the origin ``parts`` (``urlsplit``)."""
    scheme, host, port = parts.scheme, parts.hostname or "", parts.port
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"not an http(s) URL with a host: {scheme}://{host}")
    port = port or _DEFAULT_PORTS[scheme]
    tls = tls_context(verify) if scheme == "https" else None
    if proxy is None:
        return Route(host, port, tls=tls, server_name=host)
    try:  # the message of urlsplit's or .port's ValueError may quote the password's text
        found = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        proxy_port = found.port
        if "@" in found.path + found.query + found.fragment:  # a "/" cut the credentials in two
            raise ValueError
    except ValueError:
        raise ValueError("the proxy URL's port is not a number, or its password holds a '/', '?' or '#': "
                         "percent-encode its password") from None
    if found.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"Proxy URL had unsupported scheme {found.scheme}, should use http:// or https://")
    headers: tuple[tuple[str, str], ...] = ()
    if found.username is not None:
        user, password = unquote(found.username), unquote(found.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers = (("Proxy-Authorization", f"Basic {token}"),)
    proxy_tls = tls_context(verify) if found.scheme == "https" else None  # as requests did
    return Route(found.hostname or "", proxy_port or _DEFAULT_PORTS[found.scheme], tls=tls,
                 server_name=host, tunnel=f"{_bracketed(host)}:{port}" if tls else None,
                 proxy_tls=proxy_tls, proxy_headers=headers, proxied=True)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _host_header(parts: SplitResult) -> str:
    """``Host``: the origin's host, its port unless the scheme's default."""
    scheme, host, port = parts.scheme, parts.hostname or "", parts.port
    return _bracketed(host) + (f":{port}" if port and port != _DEFAULT_PORTS.get(scheme) else "")


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The ``SSLContext`` for ``verify``, its CA set loaded once (``_verifying_context``)."""
    if verify is False:
        return _unchecking_context()
    where = verify if isinstance(verify, str) else _environment_bundle() or certifi.where()
    return _verifying_context(where)


_CONTEXTS: dict[str, tuple[int, ssl.SSLContext]] = {}
_CONTEXTS_LOCK = threading.Lock()


def _verifying_context(where: str) -> ssl.SSLContext:
    """A context that trusts the CA file or directory ``where``, shared while it is unchanged.

    Why shared: loading certifi's bundle costs about 25 ms of CPU, and each lease grant makes
    an SQS queue (two origins) and each pool a GMS ``Origin``. The context is never changed
    after it is made (certificate and host name always checked), so connections share it. A
    changed file (its mtime) is loaded again; one that cannot be read raises ``OSError`` and
    is not remembered.
    """
    stamp = os.stat(where).st_mtime_ns
    with _CONTEXTS_LOCK:
        known = _CONTEXTS.get(where)
    if known is not None and known[0] == stamp:
        return known[1]
    context = _base_context()
    if os.path.isdir(where):
        context.load_verify_locations(capath=where)
    else:
        context.load_verify_locations(cafile=where)
    with _CONTEXTS_LOCK:
        _CONTEXTS[where] = (stamp, context)
    return context


def _unchecking_context() -> ssl.SSLContext:
    context = _base_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _base_context() -> ssl.SSLContext:
    """TLS 1.2 or later, HTTP/1.1 offered by ALPN, certificate and host name checked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def _environment_bundle() -> str | None:
    for name in CA_BUNDLE_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None
