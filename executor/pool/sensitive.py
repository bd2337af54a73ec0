"""The executor's own credentials, which every task's masker hides whatever the recipe asks for.

A recipe may get hold of the GMS token or an AWS key (a link to ``/proc/<pid>/environ``, a
forged store lookup) and print it. So each pool keeps one ``SensitiveValues``: the GMS token
and the host's AWS keys are pinned for the life of the process; the leaser adds each lease's
AWS credentials, of which the latest ``keep_recent`` values are kept (a recipe that started
under an older lease may still hold it). ``pool/sandboxing.py`` hands the registry itself to
each run (``SandboxSpec.live_secrets``): a lease renewed while a task runs must be masked in
that task too, so ``version`` grows with every change and a run's masker rebuilds itself when
it differs from the version it was built at (one integer compare per masked piece, no lock).
A rotating value may carry its lease's expiry: a run is given only the values still valid when
it starts (``values``, ``snapshot(since=...)``) and keeps those for its whole life, so a
long-lived pool's new runs scan for the one or two leases in force (3-6 values, 1-2 automata:
0.27 ms per MiB of output), not for the last eight (24 values, 3-6 automata: 0.7-1.3 ms).
Thread-safe: the leaser writes while launch and output threads read.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from executor import hardening
from executor.sandbox.masking import MIN_SECRET_LENGTH

HOST_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
KEEP_RECENT = 24
"""Eight leases of three values: six hours of 45-minute refreshes."""
EXPIRY_GRACE_S = 1200.0
"""A value is still masked this long after its expiry: the expiry is GMS's clock, the run's
start the host's, and a skew between them must not unmask a lease still in use. AWS accepts a
SigV4 signature up to 15 minutes off (boto3 does not correct a skew): a host that fast still
uses a lease it sees as expired, so the grace is those 15 minutes and a margin."""


class SensitiveValues:
    """Values never to show in a task's output: pinned ones plus the most recent rotating ones."""

    def __init__(self, keep_recent: int = KEEP_RECENT) -> None:
        self._keep = keep_recent
        self._pinned: dict[str, None] = {}
        self._recent: OrderedDict[str, float | None] = OrderedDict()
        """Rotating value -> its expiry (``time.time()`` seconds; None: none known), oldest first."""
        self._current: frozenset[str] = frozenset()
        """The latest ``remember``'s values (the lease in force): masked whatever expiry GMS gave
        them, as the expiry is GMS's answer and one in the past must not unmask what is in use."""
        self._lock = threading.Lock()
        self._version = 0

    @property
    def version(self) -> int:
        """Grows whenever ``values()`` changes; read without a lock (an int is read atomically)."""
        return self._version

    def pin(self, values: Iterable[str | None]) -> None:
        """Values kept for the life of the process (the GMS token, the host's keys)."""
        with self._lock:
            before = len(self._pinned)
            for value in _usable(values):
                self._pinned[value] = None
            if len(self._pinned) != before:
                self._version += 1

    def pin_host_credentials(self, environ: Mapping[str, str] | None = None) -> None:
        """The host's AWS keys: from the environment, and those ``executor.hardening`` took out
        of it at start-up (``run`` removes them so that no child inherits them)."""
        env = os.environ if environ is None else environ
        self.pin(env.get(name) for name in HOST_CREDENTIAL_VARS)
        if environ is None:
            self.pin(hardening.host_aws_credentials().values())

    def remember(self, *values: str | None, expires: float | None = None) -> None:
        """Rotating values (a lease's key id, secret key and session token) and when they expire
        (``time.time()`` seconds, None when unknown: kept for every run); oldest drop out. A
        value sent again keeps its latest expiry: a renewal re-sending it with an earlier one
        (another clock, a stale copy) must not unmask it while the later one holds."""
        hardening.register(values)  # the env store refuses them under any name
        with self._lock:
            before = tuple(self._recent.items())
            usable = _usable(values)  # in order: the oldest drop out first
            self._current = frozenset(usable)
            for value in usable:
                known = value in self._recent
                self._recent[value] = _later(self._recent[value], expires) if known else expires
                self._recent.move_to_end(value)
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)
            if set(self._recent.items()) != set(before):
                self._version += 1

    def values(self) -> tuple[str, ...]:
        """Every value a run starting now must mask."""
        return self.snapshot(time.time())[1]

    def snapshot(self, since: float | None = None) -> tuple[int, tuple[str, ...]]:
        """``version`` and the values, read together (a masker built from these is current at
        it): the pinned ones and the rotating ones that had not expired at ``since`` (a run's
        start; None: all of them), give or take ``EXPIRY_GRACE_S``, and the lease in force
        whatever its expiry. A value expiring later is in every snapshot of that run."""
        with self._lock:
            recent = (v for v, expiry in self._recent.items()
                      if since is None or expiry is None or expiry + EXPIRY_GRACE_S >= since
                      or v in self._current)
            return self._version, (*self._pinned, *(v for v in recent if v not in self._pinned))

    def __repr__(self) -> str:
        with self._lock:
            return f"SensitiveValues({len(self._pinned)} pinned, {len(self._recent)} recent)"


def _later(first: float | None, second: float | None) -> float | None:
    """The later of two expiries; None (unknown: never expires) is later than any."""
    return None if first is None or second is None else max(first, second)


def _usable(values: Iterable[str | None]) -> list[str]:
    """Strings long enough to mask (a short one would mangle every log and teaches nothing)."""
    return [v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH]
