"""``doctor``'s per-pool checks: the lease, DNS and SQS with the leased credentials, the venvs.

The lease comes from the ``listExecutorConfigs`` answer the token check already read (one
STS AssumeRole per pool on GMS's side is enough). SQS is asked for its approximate depth,
the cheapest call that proves the queue URL, the network path and the credentials at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from executor.config import ExecutorConfig, PoolSettings
from executor.datahub.lease import Lease, utcnow
from executor.datahub.proxies import proxies_for
from executor.errors import (
    BadInputError,
    ExecutorError,
    LeaseExpiredError,
    NotAllowedError,
    ThrottledError,
)
from executor.observability.doctor import Check, DoctorOptions, failed, passed, skipped, warned
from executor.observability.doctor_network import GmsState, dns_check, proxy_check, proxy_choice
from executor.queue.sqs import SqsQueue, sqs_endpoint

LEASE_WARN_S = 300.0
"""Below this, the service refreshes at once; a fresh lease this short is suspicious."""
CLOCK_FIX = (
    "compare this host's clock with NTP (a clock ahead makes fresh credentials look expired); "
    "if the clock is right, GMS hands out stale credentials: contact DataHub support"
)


def pool_checks(
    config: ExecutorConfig, pool: PoolSettings, gms: GmsState, options: DoctorOptions
) -> Iterator[Check]:
    """Lease, SQS (proxy, DNS, a call) and venvs of one pool."""
    prefix = f"pool {pool.id}"
    lease = None
    if gms.entries is None:
        yield skipped(f"{prefix}: lease", gms.why_not)
    else:
        check, lease = lease_check(prefix, pool.id, gms.entries)
        yield check
    if lease is None:
        yield skipped(f"{prefix}: sqs", "no lease")
    else:
        yield from sqs_checks(config, prefix, lease, options)
    yield venv_check(prefix, pool, options.plugins)


def lease_check(
    prefix: str, pool_id: str, entries: tuple[Mapping[str, Any], ...]
) -> tuple[Check, Lease | None]:
    """Is the pool listed (READY), and how long do its credentials last?"""
    name = f"{prefix}: lease"
    entry = next((e for e in entries if e.get("executorId") == pool_id), None)
    if entry is None:
        listed = ", ".join(sorted(str(e.get("executorId")) for e in entries)) or "none"
        return failed(
            name,
            f"GMS lists no READY executor config for pool {pool_id!r} (listed: {listed})",
            "check the pool id (DataHub > Settings > Executors) and that the pool is READY "
            "(a new pool becomes READY once its queue is provisioned)",
        ), None
    try:
        lease = Lease.from_executor_config(entry, utcnow(), refuse_expired=False)
    except BadInputError as exc:
        return failed(name, f"GMS's entry is malformed: {exc}", "contact DataHub support"), None
    left = lease.seconds_left(utcnow())
    when = lease.expiration.isoformat(timespec="seconds")
    if left <= 0:
        return failed(name, f"READY, but the credentials expired {-left:.0f}s ago ({when})", CLOCK_FIX), lease
    if left < LEASE_WARN_S:
        return warned(name, f"READY; credentials expire in {left:.0f}s ({when})", CLOCK_FIX), lease
    return passed(name, f"READY; queue {lease.queue_url}; credentials expire in {left:.0f}s ({when})"), lease


def sqs_checks(config: ExecutorConfig, prefix: str, lease: Lease, options: DoctorOptions) -> Iterator[Check]:
    """Proxy and DNS for the SQS host, then a depth query with the leased credentials."""
    url = sqs_endpoint(lease)
    proxy = proxy_choice(config.proxy, url)
    yield proxy_check(f"{prefix}: proxy (sqs)", proxy, options.timeout_s)
    yield dns_check(f"{prefix}: dns (sqs)", url, proxy, options.timeout_s)
    name = f"{prefix}: sqs"
    queue = SqsQueue(lease, proxies=proxies_for(config.proxy, lease.queue_url),
                     connect_timeout_s=options.timeout_s)
    try:
        depth = queue.approximate_depth()
    except LeaseExpiredError as exc:
        yield failed(name, f"SQS refused the leased credentials: {exc}", CLOCK_FIX)
        return
    except NotAllowedError as exc:
        yield failed(name, f"access denied: {exc}",
                     "the pool's role may not use this queue: contact DataHub support")
        return
    except ThrottledError as exc:
        yield warned(name, f"throttled: {exc}", "none needed unless it persists")
        return
    except ExecutorError as exc:
        host = urlsplit(url).hostname
        yield failed(name, f"unreachable: {exc}", f"allow HTTPS from this host to {host} (or via the proxy)")
        return
    finally:
        queue.close()
    yield passed(name, f"queue answers the leased credentials; about {depth} message(s) waiting")


def venv_check(prefix: str, pool: PoolSettings, plugins: tuple[str, ...]) -> Check:
    """Bundled venvs under the pool's root: complete, and present for every ``--plugin``."""
    name = f"{prefix}: venvs"
    root = pool.venvs.bundled_root
    found = sorted(p for p in root.glob("*-bundled") if p.is_dir()) if root.is_dir() else []
    broken = [f"{p.name} lacks {', '.join(_missing(p))}" for p in found if _missing(p)]
    complete = {p.name.removesuffix("-bundled") for p in found if not _missing(p)}
    absent = [p for p in plugins if f"{p}-bundled" not in {f.name for f in found}]
    build = f"remote-executor venv build --plugin {{}} --root {root}"
    if absent:
        return failed(name, f"no bundled venv under {root} for: {', '.join(absent)}",
                      build.format(absent[0]))
    if broken:
        plugin = broken[0].split("-bundled", 1)[0]
        detail = f"incomplete under {root}: {'; '.join(broken)}"
        return failed(name, detail, "rebuild: " + build.format(plugin))
    if not complete:
        detail = f"no bundled venvs under {root}"
        if not pool.venvs.dependency_resolution:
            return failed(name, detail + " and the pool is locked (no pip): nothing can run",
                          build.format("<source type>"))
        return warned(name, detail + "; only pinned CLI versions (built with pip) can run",
                      build.format("<source type>"))
    mode = "locked" if not pool.venvs.dependency_resolution else "dynamic versions allowed"
    return passed(name, f"{', '.join(sorted(complete))} under {root} ({mode})")


def _missing(venv: Path) -> list[str]:
    """What a usable bundled venv needs and this one lacks (``bin/python`` must resolve)."""
    return [n for n in ("bin/python", "bin/datahub") if not (venv / n).exists()]
