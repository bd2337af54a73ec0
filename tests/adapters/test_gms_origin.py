"""The GMS client's ``Origin``: TLS and proxy settings decided once, and which setting wins.

Real servers on loopback: the hostile GMS peer (``tests.security.gms_peer``) with a fresh
self-signed certificate for 127.0.0.1 and no other name, and a small recording HTTP server
that plays a forwarding proxy. The configured TLS setting wins over the environment's CA
variables; ``verify: true`` reads ``REQUESTS_CA_BUNDLE`` as requests did; the host name is
checked. A configured proxy entry wins (None: direct), else the environment, read once when
the origin is made; a proxy URL's user and password go as ``Proxy-Authorization``.
"""

from __future__ import annotations

import base64
import http.server
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.datahub.gms import GmsClient
from executor.datahub.http_origin import Origin
from executor.datahub.http_origin import tls_context as origin_context
from executor.datahub.proxies import environment_proxy, proxy_for_url
from executor.errors import ConfigError, TransportError
from tests.fixtures.http_thread import Answering, serving
from tests.security.gms_peer import ANSWER, HostilePeer, tls_context

TOKEN = "test-token-not-real"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                   "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_peer(tmp_path: Path) -> Iterator[tuple[HostilePeer, Path]]:
    context, cert = tls_context(tmp_path)
    peer = HostilePeer(lambda p, conn: p.send(conn, ANSWER), context).start()
    yield peer, cert
    peer.stop()


def config_of(url: str, verify: bool | str) -> dict[str, object]:
    with GmsClient(url, TOKEN, timeout_s=5.0, verify=verify) as gms:
        return gms.server_config()


def test_a_configured_ca_bundle_wins_over_the_environment(
    tls_peer: tuple[HostilePeer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, cert = tls_peer
    other = tmp_path / "other"
    other.mkdir()
    _, unrelated = tls_context(other)  # a CA that did not sign the peer's certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(unrelated))
    assert config_of(peer.url, str(cert)) == {}
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        config_of(peer.url, True)  # verify: true takes the environment's bundle, as requests did


def test_verify_true_reads_the_environment_bundle_else_certifi(
    tls_peer: tuple[HostilePeer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, cert = tls_peer
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        config_of(peer.url, True)  # certifi's bundle does not hold the test's own CA
    monkeypatch.setenv("CURL_CA_BUNDLE", str(cert))
    assert config_of(peer.url, True) == {}


def test_verify_false_takes_any_certificate(tls_peer: tuple[HostilePeer, Path]) -> None:
    peer, _ = tls_peer
    with pytest.warns(Warning, match="Unverified HTTPS request"):
        assert config_of(peer.url, False) == {}


def test_the_host_name_is_checked(tls_peer: tuple[HostilePeer, Path]) -> None:
    peer, cert = tls_peer
    by_name = peer.url.replace("127.0.0.1", "localhost")  # the certificate names only 127.0.0.1
    with pytest.raises(TransportError, match=r"(?i)hostname|match"):
        config_of(by_name, str(cert))


class _Recording(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[tuple[str, str | None, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(Answering):
    """Answers every GET itself, recording its target, its proxy credentials and any cookie."""

    server: _Recording

    def do_GET(self) -> None:
        headers = self.headers
        self.server.seen.append((self.path, headers.get("Proxy-Authorization"), headers.get("Cookie")))
        self.answer(b"{}", headers={"Set-Cookie": "gms-session=made-up; Path=/"})


@pytest.fixture
def recording() -> Iterator[_Recording]:
    with serving(_Recording(), "recording-http") as server:
        yield server


def test_a_forwarding_proxy_gets_the_whole_url_and_the_credentials_of_its_url(recording: _Recording) -> None:
    proxy = recording.url.replace("://", "://ops:p%40ss@")
    with GmsClient("http://gms.example.invalid:8080", TOKEN, timeout_s=5.0, proxies={"http": proxy}) as gms:
        assert gms.server_config() == {}
    expected = "Basic " + base64.b64encode(b"ops:p@ss").decode()
    assert recording.seen == [("http://gms.example.invalid:8080/config", expected, None)]


def test_no_cookie_goes_back_to_gms(recording: _Recording) -> None:
    origin = Origin(recording.url)
    try:
        first, second = (GmsClient(recording.url, TOKEN, origin=origin) for _ in range(2))
        first.health()
        first.health()
        second.health()
    finally:
        origin.close()
    assert [cookie for _, _, cookie in recording.seen] == [None, None, None]


def test_the_proxy_is_chosen_once_when_the_origin_is_made(
    recording: _Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", recording.url)
    origin = Origin("http://gms.example.invalid:8080")
    monkeypatch.delenv("HTTP_PROXY")
    try:
        assert origin.proxy == recording.url
        GmsClient(origin.url, TOKEN, origin=origin).health()
    finally:
        origin.close()
    assert [path for path, _, _ in recording.seen] == ["http://gms.example.invalid:8080/health"]


def test_proxy_choice_order(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://gms.corp.example/gms"
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    assert proxy_for_url(url, {"https": "http://configured:3128"}) == "http://configured:3128"
    assert proxy_for_url(url, {"https": None, "http": "http://configured:3128"}) is None  # None: direct
    assert proxy_for_url(url, {"http": "http://configured:3128"}) == "http://env-proxy:3128"
    assert proxy_for_url(url, None) == "http://env-proxy:3128"
    monkeypatch.setenv("NO_PROXY", ".corp.example")
    assert environment_proxy(url) is None
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("ALL_PROXY", "http://all-proxy:3128")
    assert environment_proxy(url) == "http://all-proxy:3128"


def test_a_foreign_origin_is_refused() -> None:
    origin = Origin("http://127.0.0.1:1")
    try:
        with pytest.raises(ConfigError, match="its connections go to"):
            GmsClient("http://127.0.0.1:2", TOKEN, origin=origin)
    finally:
        origin.close()


def test_a_socks_proxy_fails_each_call_with_a_transport_error() -> None:
    with GmsClient("http://gms.example.invalid:8080", TOKEN, timeout_s=5.0,
                   proxies={"http": "socks5://127.0.0.1:1080"}) as gms:
        for _ in range(2):
            with pytest.raises(TransportError, match="unsupported scheme socks5"):
                gms.health()


def test_a_closed_origin_connects_again(recording: _Recording) -> None:
    with GmsClient(recording.url, TOKEN, timeout_s=5.0) as gms:
        gms.health()
        gms.close()
        gms.health()
    assert len(recording.seen) == 2


def test_the_path_of_the_gms_url_goes_before_every_call(recording: _Recording) -> None:
    with GmsClient(recording.url + "/gms/", TOKEN, timeout_s=5.0) as gms:
        gms.health()
    proxied = GmsClient("http://gms.example.invalid/gms", TOKEN, proxies={"http": recording.url})
    with proxied:
        proxied.health()
    assert [path for path, _, _ in recording.seen] == ["/gms/health", "http://gms.example.invalid/gms/health"]


def test_an_unreadable_ca_bundle_fails_each_call_not_the_client(tmp_path: Path) -> None:
    with GmsClient("https://127.0.0.1:1", TOKEN, timeout_s=5.0, verify=str(tmp_path / "missing.pem")) as gms:
        for _ in range(2):
            with pytest.raises(TransportError, match="FileNotFoundError"):
                gms.health()


class _Redirecting(Answering):
    """Answers every call with a redirect, as a load balancer sending http:// to https:// does."""

    def _redirect(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer(b"", 302, {"Location": "https://elsewhere.example.invalid/"})

    do_GET = do_POST = _redirect


def test_a_redirect_is_no_success_and_the_result_is_not_taken_as_written() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    with serving(server, "redirecting-http"), \
            GmsClient(f"http://127.0.0.1:{server.server_address[1]}", TOKEN, timeout_s=5.0) as gms:
        with pytest.raises(TransportError, match=r"HTTP 302.*redirects are not followed"):
            gms.ingest_proposal("dataHubExecutionRequest", "urn:li:dataHubExecutionRequest:r1",
                                "dataHubExecutionRequestResult", {"status": "SUCCESS"})
        with pytest.raises(TransportError, match="HTTP 302"):
            gms.health()


def test_a_refused_origin_raises_a_new_error_each_call() -> None:
    """One error raised again and again would keep every failed call's frames (headers, bodies)."""
    with GmsClient("http://gms.example.invalid:8080", TOKEN, timeout_s=5.0,
                   proxies={"http": "socks5://127.0.0.1:1080"}) as gms:
        causes = []
        for _ in range(3):
            with pytest.raises(TransportError) as caught:
                gms.health()
            causes.append(caught.value.__cause__ or caught.value.__context__)
    assert all(c is not None for c in causes) and len({id(c) for c in causes}) == 3


def test_a_ca_bundle_is_loaded_once_while_it_is_unchanged(tmp_path: Path) -> None:
    _context, cert = tls_context(tmp_path)
    first = origin_context(str(cert))
    assert origin_context(str(cert)) is first  # a lease grant no longer reloads it
    os.utime(cert, ns=(0, os.stat(cert).st_mtime_ns + 1_000_000_000))  # a rotated bundle ...
    again = origin_context(str(cert))
    assert again is not first and again.verify_mode == ssl.CERT_REQUIRED  # ... is loaded again
    unchecked = origin_context(False)
    assert unchecked.verify_mode == ssl.CERT_NONE and unchecked is not again
    with pytest.raises(FileNotFoundError):
        origin_context(str(tmp_path / "missing.pem"))
