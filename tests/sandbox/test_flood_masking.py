"""A flood's masking: the chunks end at a newline, and secrets added late are merged into one scan.

The reader masks each 1 MiB read and hands whole lines on; the stream holds a short partial
line back whole so that each masked chunk ends with a newline (the line cutter then passes it
on without a copy). A run whose secrets came after its masker was built scans them in an
automaton of their own; once a stream has masked a flood's first MiBs it asks for them merged
(one pass fewer per MiB). Neither may change what is masked, at any read boundary.
"""

from __future__ import annotations

import pytest

from executor.pool.sensitive import SensitiveValues
from executor.sandbox import masking
from executor.sandbox.live_masking import LiveMasker
from executor.sandbox.masking import LINE_CARRY, MASK_BYTES, Masker, StreamMasker
from tests.security.hostile_world import encodings

TOKEN = "gms+token/made=up-" + "t" * 40
RECIPE_SECRET = "recipe-pass-" + "p" * 12


def _read_through(stream: StreamMasker, data: bytes, read: int) -> list[bytes]:
    """``data`` masked as the reader does: ``read`` bytes at a time into one reused buffer."""
    buffer = bytearray(read + stream.keep)
    out = []
    for pos in range(0, len(data), read):
        piece = data[pos : pos + read]
        start = stream.prefill(buffer)
        buffer[start : start + len(piece)] = piece
        out.append(stream.feed_buffer(buffer, start + len(piece)))
    return [*out, stream.finish()]


def _late_masker() -> LiveMasker:
    """A pool's masker built from its credentials, with a recipe's secret added afterwards."""
    values = SensitiveValues()
    values.pin([TOKEN])
    masker = LiveMasker(values.values(), values)
    masker.add([RECIPE_SECRET, "ab"])
    return masker


def test_a_flood_merges_late_secrets_into_one_scan_and_masks_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(masking, "CONSOLIDATE_AFTER", 64 << 10)
    masker = _late_masker()
    assert len(masker._automata) == 2
    lines = [f"{encodings(value)[form]} in line {n}\n".encode()
             for n in range(400) for value in (TOKEN, RECIPE_SECRET) for form in ("raw", "base64", "hex")]
    data = b"".join(lines) * 4
    whole = Masker([TOKEN, RECIPE_SECRET]).mask_bytes(data)
    for read in (4093, 65536):  # reads that split forms, and reads on the consolidation's edge
        masker = _late_masker()
        assert b"".join(_read_through(masker.stream(), data, read)) == whole, read
        assert len(masker._automata) == 1, read
    assert TOKEN.encode() not in whole and RECIPE_SECRET.encode() not in whole
    assert masker.short_count == 1 and not masker.consolidate()  # once; the start's short-value note stays
    masker.add(["added-after-the-merge"])
    assert masker.mask_bytes(b"x added-after-the-merge y") == b"x " + MASK_BYTES + b" y"


def test_only_a_masker_with_values_added_apart_rebuilds() -> None:
    assert not Masker([TOKEN]).consolidate()
    values = SensitiveValues()
    values.pin([TOKEN])
    plain = LiveMasker(values.values(), values)
    assert not plain.consolidate()
    late = _late_masker()
    assert late.consolidate() and not late.consolidate()
    assert late.mask(f"{TOKEN} {RECIPE_SECRET}") == "******** ********"


def test_each_masked_chunk_ends_at_its_last_newline_when_the_partial_line_is_short() -> None:
    stream = Masker([TOKEN]).stream()
    partial = b"p" * 1000  # longer than any form: held back as far as a form could reach before
    assert stream.feed(b"one\n" + partial) == b"one\n"
    assert stream.feed(b" " + TOKEN.encode()[:9]) == b""
    assert stream.feed(TOKEN.encode()[9:] + b" end\ntwo") == partial + b" " + MASK_BYTES + b" end\n"
    assert stream.finish() == b"two"
    long_partial = b"q" * (LINE_CARRY + 100)  # a longer one: only what a cut-off form may need waits
    out = stream.feed(b"three\n" + long_partial)
    assert out == b"three\n" + long_partial[: len(long_partial) - Masker([TOKEN]).max_form_length + 1]
    assert out + stream.finish() == b"three\n" + long_partial


def test_a_late_secret_is_looked_for_form_by_form_until_one_may_be_found() -> None:
    """A run's own secrets get automata built at the first scan that may find one of their
    forms (``LazyAutomaton``): output without them is looked through a form at a time, and
    what is masked is the same as with the automaton, in bytes and in a view of a buffer."""
    masker = LiveMasker([])
    masker.add([RECIPE_SECRET])
    lazy = masker._automata[-1]
    assert isinstance(lazy, masking.LazyAutomaton)
    clean = b"a line without it\n" * 100
    assert masker.mask_bytes(clean) == clean and lazy._built is None
    hidden = [f"{encodings(RECIPE_SECRET)[form]}\n".encode() for form in ("raw", "base64", "hex")]
    expected = Masker([RECIPE_SECRET]).mask_bytes(b"".join(hidden))
    assert masker.mask_bytes(memoryview(b"".join(hidden))) == expected and lazy._built is not None
    big = LiveMasker([])
    big.add([RECIPE_SECRET])
    flood = clean * (masking.PREFILTER_BUDGET // len(clean) + 1)  # past the budget with one form
    assert big.mask_bytes(flood) == flood and big._automata[-1]._built is not None  # type: ignore[attr-defined]
