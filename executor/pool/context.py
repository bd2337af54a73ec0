"""What every actor of one pool shares: settings, GMS access, health and metrics hooks."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from executor.config import ExecutorConfig, PoolSettings
from executor.datahub.gms import GmsClient
from executor.datahub.http_origin import Origin
from executor.datahub.proxies import proxies_for
from executor.pool.inflight import InFlightBook
from executor.pool.sensitive import SensitiveValues
from executor.pool.taskbook import TaskBook
from executor.pool.warm import WarmSpare
from executor.reporting.outbox import Outbox
from executor.safe_names import safe_name

T = TypeVar("T")
ACTOR_BLOCKING_TIMEOUT_S = 5.0
"""Longest a GMS call may block an actor, so a stop is honoured within seconds."""


POOL_CALLERS = ("leaser", "resolver", "reporter", "runner", "poller")
"""The pool's long-lived actors that call GMS, beside one Task per running request."""


class Memo(Generic[T]):
    """One value made on first use, from any thread; ``take`` hands it back for closing (a
    later ``get`` makes a new one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self, make: Callable[[], T]) -> T:
        """The value, made by ``make`` the first time."""
        with self._lock:
            if self._value is None:
                self._value = make()
            return self._value

    def take(self) -> T | None:
        """The value made so far, or None; the memo is empty after."""
        with self._lock:
            value, self._value = self._value, None
        return value


@dataclass(frozen=True)
class PoolContext:
    """Shared per-pool facts. Each actor makes its own GMS client; all share one ``Origin``."""

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
    http: Memo[Origin] = field(default_factory=lambda: Memo[Origin](), repr=False, compare=False)
    """The GMS connections of the pool's clients (TLS and proxy fixed once): its tasks reuse them."""
    outbox: Memo[Outbox] = field(default_factory=lambda: Memo[Outbox](), repr=False, compare=False)
    """The pool's ``Outbox`` once opened (``executor.pool.reporter.outbox_of``)."""
    plain_env: Memo[Mapping[str, str]] = field(default_factory=lambda: Memo[Mapping[str, str]](),
                                               repr=False, compare=False)
    """The environment of a run without ``extra_env_vars`` (``executor.pool.run_specs.plain_env``)."""
    spawner: Any = field(default=None, repr=False, compare=False)
    """The executor's ``executor.sandbox.spawner.SpawnServer`` that forks recipes, shared by its
    pools; None: each recipe starts through the exec wrapper."""
    warm: WarmSpare = field(default_factory=WarmSpare, repr=False, compare=False)
    """The pool's warm spare, used with ``warm_spare`` (``executor.pool.warm``)."""

    def __post_init__(self) -> None:
        self.credentials.pin([self.token])
        self.credentials.pin_host_credentials()

    @property
    def pool_id(self) -> str:
        """This pool's id."""
        return self.pool.id

    @functools.cached_property
    def state_dir(self) -> Path:
        """This pool's private state directory (outbox, logs, work dirs, venv cache); worked out
        once (a Task asked for it five times, each a ``safe_name`` and two path joins)."""
        return self.config.state_dir / "pools" / safe_name(self.pool.id)

    @property
    def gms_call_s(self) -> float:
        """The total deadline of one GMS call made by an actor (``new_gms``)."""
        return min(self.config.gms.timeout_s, ACTOR_BLOCKING_TIMEOUT_S)

    def new_gms(self) -> GmsClient:
        """A GMS client whose calls block at most a few seconds, on the pool's shared ``Origin``."""
        if self.gms_factory is not None:
            return self.gms_factory(self)
        return GmsClient(self.config.gms.url, self.token, timeout_s=self.gms_call_s,
                         origin=self.http.get(self._new_origin))

    def _new_origin(self) -> Origin:
        """Connections to GMS with the configured TLS and proxy, room for every caller at once."""
        gms = self.config.gms
        verify: bool | str = str(gms.ca_bundle) if gms.ca_bundle else gms.verify_tls
        return Origin(gms.url.rstrip("/"), verify=verify, proxies=self.proxies_for(gms.url),
                      connections=max(10, self.pool.max_workers + len(POOL_CALLERS)))

    def close_http(self) -> None:
        """Close the pool's GMS connections (once its actors are gone; a later client reconnects)."""
        origin = self.http.take()
        if origin is not None:
            origin.close()

    def proxies_for(self, url: str) -> dict[str, str | None] | None:
        """The proxies for a call to ``url`` (see ``proxies_for``)."""
        return proxies_for(self.config.proxy, url)

    def set_ready(self, ready: bool, reason: str) -> None:
        """Record whether this pool can take work (for ``/readyz``)."""
        if self.health is not None:
            self.health.set_ready(self.pool.id, ready, reason)

    def set_blocker(self, source: str, reason: str | None) -> None:
        """Keep this pool not ready for ``reason`` until cleared with None (``HealthState``)."""
        if self.health is not None:
            self.health.set_blocker(self.pool.id, source, reason)
