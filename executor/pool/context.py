"""What every actor of one pool shares: settings, GMS access, health and metrics hooks."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import requests

from executor.config import ExecutorConfig, PoolSettings, ProxySettings
from executor.datahub.bounded_http import bounded_session
from executor.datahub.gms import GmsClient
from executor.pool.inflight import InFlightBook
from executor.pool.sensitive import SensitiveValues
from executor.pool.taskbook import TaskBook
from executor.reporting.outbox import Outbox
from executor.safe_names import safe_name

T = TypeVar("T")
ACTOR_BLOCKING_TIMEOUT_S = 5.0
"""Longest a GMS call may block an actor, so a stop is honoured within seconds."""


POOL_CALLERS = ("leaser", "resolver", "reporter", "runner", "poller")
"""The pool's long-lived actors that call GMS, beside one Task per running request."""


class SharedSession:
    """A ``bounded_session`` made on first use and shared: ``requests`` sessions serve several
    threads at once as long as nobody changes them, and ``GmsClient`` never does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: requests.Session | None = None

    def session(self, connections: int) -> requests.Session:
        """The session, made with room for ``connections`` idle connections on first use."""
        with self._lock:
            if self._session is None:
                self._session = bounded_session(max(10, connections))
            return self._session

    def close(self) -> None:
        """Close its connections; a later call makes a new session."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()


class Memo(Generic[T]):
    """One value made on first use, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self, make: Callable[[], T]) -> T:
        """The value, made by ``make`` the first time."""
        with self._lock:
            if self._value is None:
                self._value = make()
            return self._value


@dataclass(frozen=True)
class PoolContext:
    """Shared per-pool facts. Each actor makes its own GMS client; all share one HTTP session."""

    config: ExecutorConfig
    pool: PoolSettings
    token: str = field(repr=False)
    instance_id: str
    health: Any = None
    """An ``executor.observability.HealthState`` or None (tests without observability)."""
    metrics: Any = None
    """An ``executor.observability.Metrics`` or None."""
    started_at: float = field(default_factory=time.time)
    gms_factory: Callable[[PoolContext], GmsClient] | None = None
    """Override of ``new_gms`` for tests that need a different client."""
    once: bool = False
    """``run --once``: accept a single request that needs running, then nothing more."""
    on_delivered: Callable[[str, str], None] | None = None
    """Called with (urn, status) once GMS has accepted a terminal result."""
    in_flight: InFlightBook = field(default_factory=InFlightBook, repr=False, compare=False)
    """The messages the pool holds; outlives a poller's restart (``executor.pool.inflight``)."""
    tasks: TaskBook = field(default_factory=TaskBook, repr=False, compare=False)
    """The pool's live Tasks; outlive a runner's restart, which adopts them (``executor.pool.taskbook``)."""
    credentials: SensitiveValues = field(default_factory=SensitiveValues, repr=False, compare=False)
    """The executor's own credentials, masked in every task (``executor.pool.sensitive``)."""
    http: SharedSession = field(default_factory=SharedSession, repr=False, compare=False)
    """The one HTTP session of the pool's GMS clients: its tasks reuse its connections."""
    outbox: Memo[Outbox] = field(default_factory=lambda: Memo[Outbox](), repr=False, compare=False)
    """The pool's ``Outbox`` once opened (``executor.pool.reporter.outbox_of``)."""
    spawner: Any = field(default=None, repr=False, compare=False)
    """The executor's ``executor.sandbox.spawner.SpawnServer`` that forks recipes, shared by its
    pools; None: each recipe starts through the exec wrapper."""

    def __post_init__(self) -> None:
        self.credentials.pin([self.token])
        self.credentials.pin_host_credentials()

    @property
    def pool_id(self) -> str:
        """This pool's id."""
        return self.pool.id

    @property
    def state_dir(self) -> Path:
        """This pool's private state directory (outbox, logs, work dirs, venv cache)."""
        return self.config.state_dir / "pools" / safe_name(self.pool.id)

    @property
    def gms_call_s(self) -> float:
        """The total deadline of one GMS call made by an actor (``new_gms``)."""
        return min(self.config.gms.timeout_s, ACTOR_BLOCKING_TIMEOUT_S)

    def new_gms(self) -> GmsClient:
        """A GMS client whose calls block at most a few seconds, on the pool's shared session."""
        if self.gms_factory is not None:
            return self.gms_factory(self)
        gms = self.config.gms
        verify: bool | str = str(gms.ca_bundle) if gms.ca_bundle else gms.verify_tls
        return GmsClient(
            gms.url,
            self.token,
            timeout_s=self.gms_call_s,
            verify=verify,
            proxies=self.proxies_for(gms.url),
            session=self.http.session(self.pool.max_workers + len(POOL_CALLERS)),
        )

    def close_http(self) -> None:
        """Close the pool's shared HTTP session (once its actors are gone)."""
        self.http.close()

    def proxies_for(self, url: str) -> dict[str, str | None] | None:
        """The proxies for a call to ``url`` (see ``proxies_for``)."""
        return proxies_for(self.config.proxy, url)

    def heartbeat(self, component: str, interval_s: float) -> None:
        """Record that ``component`` is alive (for ``/healthz``)."""
        if self.health is not None:
            self.health.heartbeat(component, interval_s)

    def set_ready(self, ready: bool, reason: str) -> None:
        """Record whether this pool can take work (for ``/readyz``)."""
        if self.health is not None:
            self.health.set_ready(self.pool.id, ready, reason)

    def set_blocker(self, source: str, reason: str | None) -> None:
        """Keep this pool not ready for ``reason`` until cleared with None (``HealthState``)."""
        if self.health is not None:
            self.health.set_blocker(self.pool.id, source, reason)


def proxies_for(settings: ProxySettings, url: str) -> dict[str, str | None] | None:
    """The proxy mapping requests and botocore should use for ``url``.

    None when the config sets no proxy: the libraries then read ``HTTP(S)_PROXY`` / ``NO_PROXY``
    themselves (both apply those to loopback hosts too unless ``NO_PROXY`` names them). A
    configured ``proxy:`` section replaces the environment entirely, loopback targets included;
    its ``no_proxy`` list (same syntax as ``NO_PROXY``) sends matching hosts direct. Direct is
    spelled ``{"http": None, "https": None}`` so that neither library falls back to the
    environment, as an empty mapping would let them.
    """
    if not settings.as_requests_proxies():
        return None
    parts = urlsplit(url)
    if settings.no_proxy and no_proxy_matches(settings.no_proxy, parts.hostname or "", parts.port):
        return {"http": None, "https": None}
    return {"http": settings.http, "https": settings.https}


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


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
