"""Replacing secret values, and the encodings they travel in, with ``********``.

A recipe may print a secret as is, base64-encode it (basic auth headers), URL-encode it
(connection strings) or JSON-escape it (reports). ``Masker`` matches all of these forms in
one regex pass. Base64 of a value inside a longer base64 stream depends on where the value
starts modulo 3: each of the three alignments gives a different run of characters, so all
three are matched (minus the one or two edge characters that mix with neighbouring bytes).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from loguru import logger

MASK = "********"
MIN_SECRET_LENGTH = 4
"""Shorter values are left alone: masking "abc" everywhere would mangle the log."""

_URLSAFE = str.maketrans("+/", "-_")


class Masker:
    """Masks every given secret value in any text; immutable and thread-safe once built."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        self.short_count = 0
        for secret in secrets:
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
        forms: set[str] = set()
        for value in values:
            forms.update(f for f in _forms(value) if len(f) >= MIN_SECRET_LENGTH)
        self.max_form_length = max((len(f) for f in forms), default=0)
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @property
    def short_secrets_note(self) -> str | None:
        """The one line to put in a task's log when some values are too short to mask."""
        if not self.short_count:
            return None
        return (f"[sandbox] note: {self.short_count} secret value(s) shorter than {MIN_SECRET_LENGTH} "
                "characters are not masked")

    def mask(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``********``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return self._pattern is not None


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
