"""``doctor``: the troubleshooting guide's manual checks, run in order, one line each.

DataHub's remote-executor troubleshooting guide has an operator check by hand, from the host
or pod: that the config is right, that the GMS and SQS host names resolve, that the proxy is
used and reachable, that GMS is up and takes the token, that each pool is READY with a fresh
lease, that SQS answers the leased credentials, that the recipes' venvs exist and what the
sandbox can enforce. ``run_doctor`` does the same with the executor's own adapters
(``GmsClient``, ``Lease``, ``SqsQueue``), so a PASS here means the service's own calls work.

Each check yields a ``Check``: PASS, WARN (works, but worth a look), FAIL (the service will
not work; the line says how to fix it) or SKIP (an earlier failure makes it meaningless).
Lines never carry the token, the leased AWS keys or a proxy's password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from executor.config import ExecutorConfig, PoolSettings

NAME_WIDTH = 28


class Status(str, Enum):
    """A check's verdict; only FAIL makes ``doctor`` exit non-zero."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Check:
    """One checked fact: what was checked, the verdict, what was seen, and how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``STATUS  name  detail[ -> fix: ...]``: the fix is shown for WARN and FAIL."""
        text = f"{self.status.value:<4}  {self.name:<{NAME_WIDTH}} {self.detail}"
        if self.fix and self.status in (Status.WARN, Status.FAIL):
            text += f" -> fix: {self.fix}"
        return text


def passed(name: str, detail: str) -> Check:
    """A PASS line."""
    return Check(name, Status.PASS, detail)


def warned(name: str, detail: str, fix: str) -> Check:
    """A WARN line with its remedy."""
    return Check(name, Status.WARN, detail, fix)


def failed(name: str, detail: str, fix: str) -> Check:
    """A FAIL line with its remedy."""
    return Check(name, Status.FAIL, detail, fix)


def skipped(name: str, why: str) -> Check:
    """A SKIP line: an earlier failure makes this check meaningless."""
    return Check(name, Status.SKIP, f"not checked: {why}")


@dataclass(frozen=True)
class DoctorOptions:
    """What ``doctor`` was asked beyond the config."""

    plugins: tuple[str, ...] = ()
    """Source plugins that must have a bundled venv in every pool (``--plugin``)."""
    timeout_s: float = 5.0
    """Longest wait of any one network check (DNS, TCP, HTTP)."""


def run_doctor(config: ExecutorConfig, token: str, options: DoctorOptions) -> Iterator[Check]:
    """Every check after the config's, in the guide's order; yields each as soon as it is known."""
    from executor.observability.doctor_host import host_checks
    from executor.observability.doctor_network import gms_checks
    from executor.observability.doctor_pools import pool_checks

    gms = yield from gms_checks(config, token, options)
    for pool in config.pools:
        yield from pool_checks(config, pool, gms, options)
        yield from pool_use_checks(config, pool, token, gms.entries is not None, options)
    yield from host_checks(config)


def pool_use_checks(
    config: ExecutorConfig, pool: PoolSettings, token: str, gms_ok: bool, options: DoctorOptions
) -> Iterator[Check]:
    """What a pool's tasks use at run time: its secret stores, and a venv per source it runs."""
    from executor.observability.doctor_sources import source_checks
    from executor.observability.doctor_stores import store_checks

    yield from store_checks(config, pool, options)
    yield from source_checks(config, pool, token, gms_ok, options)


def report(checks: Sequence[Check] | Iterator[Check], out: Callable[[str], None]) -> list[Check]:
    """Print each line as it comes (a slow check shows where it hangs) and return them all."""
    seen: list[Check] = []
    for check in checks:
        out(check.line())
        seen.append(check)
    return seen


def summary(checks: Sequence[Check]) -> str:
    """The closing line: counts per verdict."""
    counts = {s: sum(1 for c in checks if c.status is s) for s in Status}
    verdict = "problems found" if counts[Status.FAIL] else "all checks passed"
    shown = ", ".join(f"{n} {s.value.lower()}" for s, n in counts.items() if n)
    return f"doctor: {verdict} ({shown})"
