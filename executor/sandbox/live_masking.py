"""A task's masker that also hides values registered after the task started (a renewed lease).

A run's own secrets (those its recipe references) are fixed when it starts, but the executor's
credentials are not: the leaser renews the pool's AWS keys every 45 minutes, and a recipe that
runs for hours must have the new keys masked as soon as the executor holds them. So a run may
be given a shared, versioned ``SecretSource`` (``executor.pool.sensitive.SensitiveValues``):
``LiveMasker`` is a ``Masker`` that, before each use, compares the source's version with the
one it was built at (one integer compare, no lock) and, when it changed, rebuilds itself from
its own secrets plus the source's current values.

It is a ``Masker`` subclass so that whatever takes a ``Masker`` (the output reader, the report
read-back) gets the refresh without knowing about it. The rebuild builds a fresh ``Masker`` and
takes over its instance state, so it stays right whatever ``Masker`` keeps internally. A
caller that holds per-stream state derived from a masker (a chunk overlap sized by
``max_form_length``) should call ``refresh()`` at a chunk boundary and read it afterwards.
A masker asks the source for the values valid from its start on (``snapshot(since=...)``): a
lease that expired before the run began is not scanned for (a long-lived pool keeps the last
eight), one that expires while it runs stays.

Every run starts with the same values (the pool's credentials: ``pool/sandboxing.py`` gives
them both as its own secrets and as the source), and building their automata costs 0.4-0.9 ms
of CPU per run. So a masker whose own values are all among the source's current ones takes
over the state of the one the source's previous run built at the same version
(``_SharedBuilds``): a ``Masker`` never changes once built, and nothing is kept that the
source does not hold anyway. A run's recipe secrets (``add``) are never shared or kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Protocol

from executor.sandbox.masking import MIN_SECRET_LENGTH, Masker

_OWN_FIELDS = frozenset({"_own", "_source", "_since", "_version", "_refresh_lock", "short_count"})
"""Instance fields of ``LiveMasker`` that a rebuild keeps (the short-secret note is the start's)."""


class SecretSource(Protocol):
    """Values that may grow while a run goes on, with a version that changes whenever they do."""

    @property
    def version(self) -> int: ...

    def snapshot(self, since: float | None = None) -> tuple[int, tuple[str, ...]]:
        """The version and the values at that version, read together: those still valid at
        ``since`` (``time.time()`` seconds; None: all)."""
        ...


class LiveMasker(Masker):
    """``Masker`` over ``own`` secrets plus ``source``'s values, rebuilt when ``source`` changes."""

    _added_apart = False
    """Whether ``add`` gave automata of their own that a rebuild would merge (``consolidate``)."""

    def __init__(self, own: Iterable[str], source: SecretSource | None = None) -> None:
        self._own = tuple(own)
        self._source = source
        self._refresh_lock = threading.Lock()
        self._since = time.time()
        """The run's start: values that expired before it are not masked (``SecretSource``)."""
        version, values = source.snapshot(self._since) if source is not None else (0, ())
        shared = _SHARED.get(source, version, self._own, values) if source is not None else None
        if shared is not None:
            vars(self).update(vars(shared))
        else:
            super().__init__([*self._own, *values])
            if source is not None:
                _SHARED.keep(source, version, self._own, values, self)
        self._version = version

    @property
    def since(self) -> float:
        """The masker's start (``time.time()``): the source's values expired before it are left out."""
        return self._since

    @property
    def version(self) -> int:
        """The source's version this masker was last built at."""
        return self._version

    def refresh(self) -> bool:
        """Rebuild when the source changed since the last build; True when it did."""
        source = self._source
        if source is None or source.version == self._version:
            return False
        with self._refresh_lock:
            if source.version == self._version:
                return False
            self._rebuild()
            return True

    def add(self, values: Iterable[str]) -> None:
        """More secrets of the run's own, known only after it was built (a run whose recipe was
        spawned before its secrets resolved): masked from now on. Call it before any output they
        may appear in is read; the short-secret note then counts them too.

        Their forms get automata of their own beside the ones already built (building every
        form of the credentials again took 0.9 ms, the session token's most of it); ``spans``
        merges the matches of all automata. Those are lazy (``masking.LazyAutomaton``): built at
        the first chunk that holds one of the forms, or once the output is no longer small
        (about 0.1 ms a run that most trivial runs never pay). A scan then
        makes one pass more over the output, 0.03-0.1 ms per MiB, until a stream that has masked
        a flood's first MiBs asks for them merged (``consolidate``)."""
        added = tuple(values)
        with self._refresh_lock:
            known = set(self._own)
            self._own = (*self._own, *added)
            extra = Masker((v for v in added if v not in known), lazy=True)
            self._automata = [*self._automata, *extra._automata]  # a new list: the old may be shared
            self.max_form_length = max(self.max_form_length, extra.max_form_length)
            self.short_count += extra.short_count
            self._added_apart = self._added_apart or bool(extra)

    def consolidate(self) -> bool:
        """Rebuild once with the values ``add`` put in automata of their own, so that a scan makes
        one pass fewer (a stream calls it once it has masked a flood's first MiBs: the rebuild,
        about 1 ms, would cost a short run more than it saves); True when it did."""
        with self._refresh_lock:
            if not self._added_apart:
                return False
            self._rebuild()
            return True

    def _rebuild(self) -> None:
        """Take over the state of a fresh ``Masker`` of the own secrets and the source's current
        values (the lock is held); the short-secret count stays the start's (short values are
        not warned about again)."""
        version, values = self._source.snapshot(self._since) if self._source is not None else (0, ())
        fresh = Masker([*(s for s in self._own if len(s) >= MIN_SECRET_LENGTH), *values])
        vars(self).update({k: v for k, v in vars(fresh).items() if k not in _OWN_FIELDS})
        self._version = version
        self._added_apart = False

    def mask(self, text: str) -> str:
        """``Masker.mask`` with the values current now."""
        self.refresh()
        return super().mask(text)

    def __bool__(self) -> bool:
        self.refresh()
        return super().__bool__()


class _SharedBuilds:
    """The last masker built from each source's values alone, by version (``LiveMasker``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._builds: weakref.WeakKeyDictionary[
            SecretSource, tuple[int, tuple[str, ...], tuple[str, ...], Masker]] = weakref.WeakKeyDictionary()
        """Source -> the version, the own values and the source's values (at one version, they
        differ as leases expire) of the last build, and its state."""

    def get(self, source: SecretSource, version: int, own: tuple[str, ...],
            values: tuple[str, ...]) -> Masker | None:
        """A plain ``Masker`` of ``own`` + ``values``, built before at ``version`` from the same
        values; None if none."""
        if not set(own) <= set(values):
            return None  # values of the run's own: built for it alone, never shared
        found = None
        with contextlib.suppress(TypeError), self._lock:  # TypeError: no weak reference to it
            found = self._builds.get(source)
        return found[3] if found is not None and found[:3] == (version, own, values) else None

    def keep(self, source: SecretSource, version: int, own: tuple[str, ...], values: tuple[str, ...],
             built: Masker) -> None:
        """Keep a copy of ``built``'s state (a plain ``Masker``) when it holds only the source's values."""
        if not set(own) <= set(values):
            return
        copy = Masker.__new__(Masker)
        kept = _OWN_FIELDS - {"short_count"}
        vars(copy).update({k: v for k, v in vars(built).items() if k not in kept})
        # A source that takes no weak reference (TypeError) is not shared.
        with contextlib.suppress(TypeError), self._lock:
            self._builds[source] = (version, own, values, copy)


_SHARED = _SharedBuilds()
