"""``doctor``'s outbound checks: proxy, DNS, GMS health and the token (with the pools' listing).

The proxy is the one the service itself would use (``executor.datahub.proxies``):
the config's ``proxy:`` section when set, else ``HTTP(S)_PROXY`` / ``NO_PROXY`` as the GMS
client and botocore read them. DNS runs on a thread with a deadline, since a resolver that does not
answer would otherwise hold ``doctor`` for the resolver's own (long) timeouts.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from executor.config import ExecutorConfig, ProxySettings
from executor.datahub.gms import LIST_EXECUTOR_CONFIGS, GmsClient
from executor.datahub.proxies import environment_proxy, proxies_for
from executor.errors import BadInputError, ExecutorError, NotAllowedError, TransportError
from executor.observability.doctor import Check, DoctorOptions, failed, passed, skipped, warned

KEY_FIX = (
    'use a DataHub "Remote Executor" access token (Settings > Access Tokens) in gms.token, '
    "gms.token_file or DATAHUB_GMS_TOKEN"
)
REACH_FIX = (
    "check gms.url / DATAHUB_GMS_URL (DataHub Cloud: https://<company>.acryl.io/gms) and that this "
    "host may reach it (firewall, egress policy, proxy)"
)


@dataclass(frozen=True)
class GmsState:
    """What the GMS checks learned, for the pool checks that follow."""

    entries: tuple[Mapping[str, Any], ...] | None = field(default=None, repr=False)
    """``listExecutorConfigs`` entries (they hold AWS keys: never printed); None if not read."""
    why_not: str = ""
    """Why ``entries`` is None, for the SKIP lines."""


@dataclass(frozen=True)
class ProxyChoice:
    """The proxy a call to some URL goes through, and where that choice comes from."""

    url: str | None
    source: str

    def describe(self) -> str:
        """``via http://proxy:3128 (from HTTPS_PROXY)`` or ``direct (...)``; no password shown."""
        if self.url is None:
            return f"direct ({self.source})"
        return f"via {mask_userinfo(self.url)} (from {self.source})"


def proxy_choice(settings: ProxySettings, url: str) -> ProxyChoice:
    """The proxy the executor's GMS and botocore calls to ``url`` use."""
    scheme = urlsplit(url).scheme
    explicit = proxies_for(settings, url)
    if explicit is not None:
        chosen = explicit.get(scheme)
        if chosen:
            return ProxyChoice(chosen, f"config proxy.{scheme}")
        if getattr(settings, scheme, None):
            return ProxyChoice(None, "config proxy.no_proxy matches the host")
        return ProxyChoice(None, f"config proxy sets no {scheme} proxy")
    names = [n for n in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY") if os.environ.get(n)]
    names += [f"{n} (GMS calls only: botocore ignores it)" for n in ("all_proxy", "ALL_PROXY")
              if os.environ.get(n)]
    if not names:
        return ProxyChoice(None, f"no proxy configured: no proxy section, no {scheme.upper()}_PROXY")
    chosen = environment_proxy(url)
    if not chosen:
        return ProxyChoice(None, f"{names[0]} is set, but NO_PROXY matches the host")
    return ProxyChoice(chosen, names[0])


def mask_userinfo(url: str) -> str:
    """``http://user:pass@host:port`` -> ``http://***@host:port``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[-1]).geturl()


def host_port(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL (default port by scheme)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "", parts.port or default


def resolve(host: str, port: int, timeout_s: float) -> list[str]:
    """The addresses ``host`` resolves to; raises OSError (or TimeoutError past ``timeout_s``)."""
    found: list[str] = []
    errors: list[OSError] = []

    def work() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found.extend(sorted({str(info[4][0]) for info in infos}))
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="doctor-dns", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer from the resolver within {timeout_s:g}s")
    if errors:
        raise errors[0]
    return found


def dns_check(name: str, url: str, proxy: ProxyChoice, timeout_s: float) -> Check:
    """Does the host of ``url`` resolve here? Through a proxy, the proxy resolves it: WARN only."""
    host, port = host_port(url)
    try:
        addresses = resolve(host, port, timeout_s)
    except OSError as exc:
        detail = f"{host} does not resolve here ({exc})"
        if proxy.url is not None:
            return warned(name, detail + "; the proxy resolves it for us",
                          "none needed if the proxy can resolve it; else fix DNS")
        fix = "fix DNS for this host (resolv.conf, cluster DNS, egress to the resolver)"
        return failed(name, detail, fix)
    shown = ", ".join(addresses[:3]) + (" ..." if len(addresses) > 3 else "")
    return passed(name, f"{host} -> {shown}")


def proxy_check(name: str, proxy: ProxyChoice, timeout_s: float) -> Check:
    """Is the proxy in use reachable (a TCP connection to it)?"""
    if proxy.url is None:
        return passed(name, proxy.describe())
    host, port = host_port(proxy.url)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        return failed(
            name,
            f"{proxy.describe()}: cannot connect ({type(exc).__name__}: {exc})",
            f"check the proxy address in {proxy.source} and that this host may reach it",
        )
    return passed(name, f"{proxy.describe()}, accepts connections")


def gms_client(config: ExecutorConfig, token: str, timeout_s: float) -> GmsClient:
    """A client configured as the service's own (TLS, proxy), with doctor's shorter timeout."""
    gms = config.gms
    verify: bool | str = str(gms.ca_bundle) if gms.ca_bundle else gms.verify_tls
    return GmsClient(gms.url, token, timeout_s=min(gms.timeout_s, timeout_s), verify=verify,
                     proxies=proxies_for(config.proxy, gms.url))


def gms_checks(
    config: ExecutorConfig, token: str, options: DoctorOptions
) -> Generator[Check, None, GmsState]:
    """Proxy, DNS, /health and the token; returns the pools' listing for the pool checks."""
    url = config.gms.url
    proxy = proxy_choice(config.proxy, url)
    yield proxy_check("proxy (gms)", proxy, options.timeout_s)
    yield dns_check("dns (gms)", url, proxy, options.timeout_s)
    with gms_client(config, token, options.timeout_s) as gms:
        health, reachable = health_check(gms)
        yield health
        if not reachable:
            yield skipped("gms token", "GMS is not reachable")
            return GmsState(why_not="GMS is not reachable")
        if not token:
            yield skipped("gms token", "no token configured")
            return GmsState(why_not="no token configured")
        check, entries = token_check(gms)
        yield check
    if entries is None:
        return GmsState(why_not="the token check failed")
    return GmsState(entries=tuple(entries))


def health_check(gms: GmsClient) -> tuple[Check, bool]:
    """``GET /health`` (no token needed): is GMS up at this URL? Also: could we reach it at all?"""
    try:
        gms.health()
    except TransportError as exc:
        return failed("gms health", str(exc), REACH_FIX), False
    except ExecutorError as exc:
        fix = "gms.url does not point at GMS: DataHub Cloud URLs end in /gms"
        return failed("gms health", str(exc), fix), True
    return passed("gms health", f"{gms.url}/health answered"), True


def token_check(gms: GmsClient) -> tuple[Check, list[Mapping[str, Any]] | None]:
    """``listExecutorConfigs``: the call the service makes first, so the token's real test."""
    try:
        data = gms.graphql(LIST_EXECUTOR_CONFIGS, operation_name="listExecutorConfigs")
    except NotAllowedError as exc:
        return failed("gms token", f"refused: {exc}", KEY_FIX), None
    except BadInputError as exc:
        fix = "this GMS offers no listExecutorConfigs: remote executors need DataHub Cloud"
        return failed("gms token", str(exc), fix), None
    except ExecutorError as exc:
        return failed("gms token", str(exc), REACH_FIX), None
    listing = data.get("listExecutorConfigs") or {}
    raw = listing.get("executorConfigs") if isinstance(listing, dict) else None
    entries: list[Mapping[str, Any]] = [e for e in raw or [] if isinstance(e, dict)]
    pools = ", ".join(sorted(str(e.get("executorId")) for e in entries)) or "none"
    return passed("gms token", f"accepted (listExecutorConfigs lists READY pool(s): {pools})"), entries
