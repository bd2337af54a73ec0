"""Replacing secret values, and the encodings they travel in, with ``********``.

A recipe may print a secret as is, base64-encode it (basic auth headers), URL-encode it
(connection strings), JSON-escape it (reports) or hex-dump it. ``Masker`` matches all of these
forms, as UTF-8 bytes, with Aho-Corasick automata (``ahocorasick_rs``: one pass over the bytes
at memory speed, where a regex alternation tries every form at every position). Base64 of a
value inside a longer base64 stream depends on where the value starts modulo 3: each of the
three alignments gives a different run of characters, so all three are matched (minus the one
or two edge characters that mix with neighbouring bytes).

The output of a run is masked in chunks as it is read (``StreamMasker``), not line by line.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Protocol
from urllib.parse import quote, quote_plus

import ahocorasick_rs
from loguru import logger

MASK = "********"
MASK_BYTES = MASK.encode()
MIN_SECRET_LENGTH = 4
"""Shorter values are left alone: masking "abc" everywhere would mangle the log."""
GROUP_SIZE = 48
"""Forms per automaton: up to about 64 patterns the library scans with a SIMD prefilter at
GB/s; one automaton of hundreds of forms falls back to a plain DFA walk, 5-10x slower, so many
secrets are split into several automata whose matches are merged. Each is a contiguous NFA:
about 1 ms to build for a few secrets, where the default (a DFA for few patterns) takes 5-7 ms
per run, and with the prefilter it scans as fast."""

GUARD_LENGTH = 256
"""Forms this long turn the library's rare-byte prefilter off (its offsets are one byte): see
``automaton_patterns``."""

LINE_CARRY = 16 << 10
"""A stream holds back the partial line at a chunk's end whole when it is no longer than this,
so each chunk's masked bytes end with a newline and the line cutter passes them on without a
copy (about 0.05 ms per MiB); a longer one is held back as far as a cut-off form may reach."""
CONSOLIDATE_AFTER = 8 << 20
"""Bytes a stream masks before it asks its masker to merge automata added late (``consolidate``):
one scan fewer per MiB (about 0.1 ms) repays the rebuild (about 1 ms) within a flood, and a
short run never pays it."""

PREFILTER_BUDGET = 256 << 10
"""Bytes times forms a lazy automaton (``LazyAutomaton``) looks through a form at a time before
it builds itself: about as long as its build (0.1 ms), so a run that needs the automaton pays at
most about twice the build, and a run whose output is small never pays it."""

_URLSAFE = str.maketrans("+/", "-_")


class Masker:
    """Masks every given secret value in text or bytes; immutable and thread-safe once built."""

    def __init__(self, secrets: Iterable[str], lazy: bool = False) -> None:
        """``lazy``: each automaton is built at the first scan that may find one of its forms
        (``LazyAutomaton``), for values that mask one run's output only."""
        values: set[str] = set()
        self.short_count = 0
        for secret in dict.fromkeys(secrets):  # a value given twice is one value, counted once
            if not secret:
                continue
            parts = [secret, *(line for line in secret.splitlines() if line != secret)]
            for part in parts:
                if len(part) >= MIN_SECRET_LENGTH:
                    values.add(part)
                elif part is secret:
                    self.short_count += 1
        if self.short_count:
            logger.warning("{} secret value(s) shorter than {} characters will not be masked in logs",
                           self.short_count, MIN_SECRET_LENGTH)
        forms: set[bytes] = set()
        for value in values:
            forms.update(f.encode("utf-8") for f in _forms(value) if len(f) >= MIN_SECRET_LENGTH)
        self.max_form_length = max((len(f) for f in forms), default=0)
        """The longest form in bytes: a stream keeps this much minus one between chunks."""
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        groups = [ordered[i:i + GROUP_SIZE] for i in range(0, len(ordered), GROUP_SIZE)]
        self._automata: list[Automaton] = [LazyAutomaton(g) if lazy else build_automaton(g) for g in groups]

    @property
    def short_secrets_note(self) -> str | None:
        """The one line to put in a task's log when some values are too short to mask."""
        if not self.short_count:
            return None
        return (f"[sandbox] note: {self.short_count} secret value(s) shorter than {MIN_SECRET_LENGTH} "
                "characters are not masked")

    def mask(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``********``."""
        if not self._automata or not text:
            return text
        raw = text.encode("utf-8", "surrogatepass")
        spans = self.spans(raw)
        return _apply(raw, spans, len(raw)).decode("utf-8", "surrogatepass") if spans else text

    def mask_bytes(self, data: bytes) -> bytes:
        """``data`` with every form of every secret replaced by ``********``."""
        spans = self.spans(data)
        return _apply(data, spans, len(data)) if spans else data

    def spans(self, data: bytes | memoryview) -> list[tuple[int, int]]:
        """Where forms occur in ``data``, as sorted ``(start, end)`` pairs that do not overlap.

        Each automaton gives the leftmost-longest matches of its own forms; where matches of
        different automata overlap, their union is one span (more is masked, never less).
        """
        if not self._automata:
            return []
        if len(self._automata) == 1:
            return [(s, e) for _, s, e in self._automata[0].find_matches_as_indexes(data)]
        found = sorted((s, e) for ac in self._automata for _, s, e in ac.find_matches_as_indexes(data))
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def consolidate(self) -> bool:
        """Merge automata that were added apart from the others into as few as a fresh build
        makes; True when it did. A plain ``Masker`` has none (``LiveMasker.add`` makes them)."""
        return False

    def stream(self) -> StreamMasker:
        """A masker for one byte stream read in chunks."""
        return StreamMasker(self)

    def __bool__(self) -> bool:
        return bool(self._automata)


class StreamMasker:
    """Masks a byte stream chunk by chunk, so that a secret split across two reads is masked.

    What could still be the start of a form cut off by the end of the chunk stays behind: the
    partial line after the chunk's last newline when it is at most ``LINE_CARRY`` bytes, else
    the last ``max_form_length - 1`` bytes; never bytes before that newline (no form but a
    multi-line value holds a newline, and each line of those is a value of its own), so
    complete lines are never held back waiting for more output. Once ``CONSOLIDATE_AFTER``
    bytes are masked, the masker merges automata added late (``Masker.consolidate``).
    """

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._carry = b""
        self._until_consolidate = CONSOLIDATE_AFTER

    @property
    def keep(self) -> int:
        """At most this many bytes are held back between chunks.

        Read at every chunk, not once: a live masker (``live_masking``) may have grown longer
        forms since the stream began (a renewed lease's session token).
        """
        return max(self._masker.max_form_length - 1, LINE_CARRY) if self._masker.max_form_length else 0

    def feed(self, chunk: bytes) -> bytes:
        """The masked bytes that are final now; the rest waits for the next chunk."""
        if not self._masker:
            return chunk
        data = self._carry + chunk if self._carry else chunk
        return self._take(data, len(data))

    def prefill(self, buffer: bytearray) -> int:
        """Put the held-back bytes at the start of a read buffer; the next read goes after them.

        With ``feed_buffer`` this masks a stream read into one reused buffer without copying
        each read into a new object first (a copy of a whole read per read, and the memory it
        leaves fragmented).
        """
        size = len(self._carry)
        buffer[:size] = self._carry
        return size

    def feed_buffer(self, buffer: bytearray, end: int) -> bytes:
        """``feed`` for ``buffer[:end]``, whose start is what ``prefill`` put there."""
        if not self._masker:
            return bytes(memoryview(buffer)[:end])
        return self._take(buffer, end)

    def _take(self, data: bytes | bytearray, end: int) -> bytes:
        self._until_consolidate -= end
        if self._until_consolidate < 0:
            self._until_consolidate = 1 << 62  # once per stream
            self._masker.consolidate()
        with memoryview(data) as whole, whole[:end] as view:
            hold = data.rfind(b"\n", 0, end) + 1
            if end - hold > LINE_CARRY:
                hold = max(end - self._masker.max_form_length + 1, hold)
            spans = self._masker.spans(view)
            out = _apply(view, spans, hold)
            done = max(hold, max((e for s, e in spans if s < hold), default=0))
            self._carry = bytes(view[done:])
        return out

    def finish(self) -> bytes:
        """Whatever was held back, masked (the stream has ended)."""
        data, self._carry = self._carry, b""
        return self._masker.mask_bytes(data) if data else b""


class Automaton(Protocol):
    """What a scan asks of one group's automaton (``ahocorasick_rs.BytesAhoCorasick``)."""

    def find_matches_as_indexes(self, haystack: bytes | memoryview) -> list[tuple[int, int, int]]: ...


def build_automaton(group: list[bytes]) -> ahocorasick_rs.BytesAhoCorasick:
    """The automaton of one group of forms (longest first)."""
    return ahocorasick_rs.BytesAhoCorasick(automaton_patterns(group),
                                           matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
                                           implementation=ahocorasick_rs.Implementation.ContiguousNFA)


class LazyAutomaton:
    """A group's automaton built at the first scan that may find one of its forms.

    A run's own secrets are masked in its output only, and a trivial run's output is a few KiB
    that holds none of them: a ``find`` per form costs microseconds there, where building the
    automaton cost about 0.1 ms a run. A chunk that would take the bytes times forms looked
    through past ``PREFILTER_BUDGET`` builds it, so a flood is scanned by the automaton at
    memory speed. Two threads may both build it: the last one built is kept, and both find the
    same matches."""

    __slots__ = ("_built", "_group", "_looked")

    def __init__(self, group: list[bytes]) -> None:
        self._group = group
        self._built: ahocorasick_rs.BytesAhoCorasick | None = None
        self._looked = 0

    def find_matches_as_indexes(self, haystack: bytes | memoryview) -> list[tuple[int, int, int]]:
        built = self._built
        if built is None:
            cost = len(haystack) * len(self._group)
            if self._looked + cost <= PREFILTER_BUDGET:
                self._looked += cost
                data = haystack if isinstance(haystack, bytes) else bytes(haystack)
                if not any(form in data for form in self._group):
                    return []  # the guard (``automaton_patterns``) is its longest form repeated
            built = self._built = build_automaton(self._group)
        return built.find_matches_as_indexes(haystack)


def automaton_patterns(group: list[bytes]) -> list[bytes]:
    """The patterns of one automaton: ``group`` (longest first), and when all are shorter than
    ``GUARD_LENGTH`` bytes, its longest form repeated to that length in front.

    For a few short forms the library picks a prefilter that ``memchr``s for the forms' one or
    two rarest bytes (rarest in English text): for half of UUID and hex secrets those are digits
    or hex letters, found at every few bytes of a log of ids and hashes, and each find costs a
    walk of the automaton: 2-17 ms per MiB instead of 0.1-0.2 (random alphanumerics, logs with a
    UUID per line). A form of ``GUARD_LENGTH`` bytes turns that prefilter off, and the SIMD one
    it falls back to (Teddy, as for the pool's credentials, whose session token is longer) scans
    at 0.1-0.2 ms per MiB whatever the text. The guard masks nothing that its form's copies
    would not: a run of them is one span (one mask) instead of one each. It is not counted in
    ``max_form_length``: a run cut by a chunk's end is masked copy by copy.
    """
    if not group or len(group[0]) >= GUARD_LENGTH:
        return group
    longest = group[0]
    return [longest * -(-GUARD_LENGTH // len(longest)), *group]


def _apply(data: bytes | memoryview, spans: list[tuple[int, int]], limit: int) -> bytes:
    """``data`` up to ``limit`` (further when a span starting before it ends later), with every
    span that starts before ``limit`` replaced by the mask."""
    pieces: list[bytes | memoryview] = []
    pos = 0
    for start, end in spans:
        if start >= limit:
            break
        pieces += (data[pos:start], MASK_BYTES)
        pos = end
    if not pieces:
        return bytes(data[:limit])
    if pos < limit:
        pieces.append(data[pos:limit])
    return b"".join(pieces)


def _forms(value: str) -> set[str]:
    """The value plus its URL-encoded, JSON-escaped, hex (both cases) and base64 forms (all
    alignments)."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    raw = value.encode("utf-8")
    forms.update((raw.hex(), raw.hex().upper()))
    encoded = base64.b64encode(raw).decode("ascii")
    for text in (encoded, encoded.rstrip("="), *_base64_fragments(raw)):
        forms.add(text)
        forms.add(text.translate(_URLSAFE))
    return forms


def _base64_fragments(raw: bytes) -> list[str]:
    """For each start offset modulo 3, the base64 characters fixed by ``raw`` alone.

    With ``k`` unknown bytes before the value, character ``i`` covers bits ``[6i, 6i+6)``;
    it depends only on the value when those bits lie within ``[8k, 8(k+len))``.
    """
    fragments = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + raw).decode("ascii").rstrip("=")
        start = -(-8 * k // 6)
        end = 8 * (k + len(raw)) // 6
        fragments.append(encoded[start:end])
    return fragments
