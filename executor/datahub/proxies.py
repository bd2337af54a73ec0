"""Which proxy a call to a URL goes through: the config's ``proxy:`` section, else the environment.

The executor's GMS client and its SQS client (botocore) take the same mapping
(``proxies_for``): None when the config sets no proxy, so each reads ``HTTP(S)_PROXY`` /
``NO_PROXY`` itself. The GMS client resolves its one URL's proxy once, when it is made
(``proxy_for_url``), rather than scanning the environment on every call as ``requests`` did.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit
from urllib.request import getproxies_environment

from executor.config import ProxySettings


def proxies_for(settings: ProxySettings, url: str) -> dict[str, str | None] | None:
    """The proxy mapping the GMS client and botocore should use for ``url``.

    None when the config sets no proxy: the clients then read ``HTTP(S)_PROXY`` / ``NO_PROXY``
    (both apply those to loopback hosts too unless ``NO_PROXY`` names them). A configured
    ``proxy:`` section replaces the environment entirely, loopback targets included; its
    ``no_proxy`` list (same syntax as ``NO_PROXY``) sends matching hosts direct. Direct is
    spelled ``{"http": None, "https": None}`` so that neither client falls back to the
    environment, as an empty mapping would let them.
    """
    if not settings.as_requests_proxies():
        return None
    if settings.no_proxy and bypassed(settings.no_proxy, url):
        return {"http": None, "https": None}
    return {"http": settings.http, "https": settings.https}


def proxy_for_url(url: str, proxies: Mapping[str, str | None] | None) -> str | None:
    """The proxy URL for ``url``, None for direct: the mapping's entry for the URL's scheme
    when it has one (None in it means direct), else the environment (``environment_proxy``)."""
    scheme = urlsplit(url).scheme
    if proxies is not None and scheme in proxies:
        return proxies[scheme] or None
    return environment_proxy(url)


def environment_proxy(url: str) -> str | None:
    """``<scheme>_proxy`` or ``all_proxy`` (either case, lower case first) unless ``no_proxy``
    names the host, as ``requests`` reads them; None for direct."""
    found = getproxies_environment()
    bypass = found.get("no", "")
    if bypass and bypassed(bypass, url):
        return None
    scheme = urlsplit(url).scheme
    return found.get(scheme) or found.get("all") or None


def bypassed(no_proxy: str, url: str) -> bool:
    """Whether ``no_proxy`` sends ``url`` direct; a URL without a port has its scheme's."""
    parts = urlsplit(url)
    return no_proxy_matches(no_proxy, parts.hostname or "", parts.port or _default_port(parts.scheme))


def no_proxy_matches(no_proxy: str, host: str, port: int | None = None) -> bool:
    """``NO_PROXY`` rules: ``*``; a host or domain suffix (``.corp`` or ``corp``), optionally
    with ``:port``; an IP address or CIDR range (``10.0.0.0/8``)."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name) or _in_network(host, name):
            return True
    return False


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
