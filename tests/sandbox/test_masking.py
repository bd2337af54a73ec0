"""Secret masking: every form a secret value travels in is replaced by ********."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sandbox import Masker
from executor.sandbox.masking import GUARD_LENGTH, MASK, automaton_patterns

SECRET = "s3cr3t/Pa$$w0rd+é"


def test_plain_url_and_json_forms_are_masked() -> None:
    masker = Masker([SECRET])
    for form in (SECRET, quote(SECRET, safe=""), quote_plus(SECRET), json.dumps(SECRET)[1:-1],
                 json.dumps(SECRET, ensure_ascii=False)[1:-1]):
        masked = masker.mask(f"before {form} after")
        assert masked == f"before {MASK} after", form


def test_standalone_base64_and_urlsafe_base64_are_masked() -> None:
    masker = Masker([SECRET])
    encoded = base64.b64encode(SECRET.encode()).decode()
    assert masker.mask(f"Authorization: Basic {encoded}") == f"Authorization: Basic {MASK}"
    urlsafe = base64.urlsafe_b64encode(SECRET.encode()).decode()
    assert urlsafe not in masker.mask(f"token={urlsafe}")


@settings(max_examples=60, deadline=None)
@given(prefix=st.binary(max_size=7), suffix=st.binary(max_size=7),
       secret=st.text(alphabet=st.characters(codec="utf-8"), min_size=4, max_size=24))
def test_base64_inside_a_longer_stream_is_masked_at_every_alignment(prefix: bytes, suffix: bytes,
                                                                     secret: str) -> None:
    masker = Masker([secret])
    stream = base64.b64encode(prefix + secret.encode() + suffix).decode()
    masked = masker.mask(stream)
    assert MASK in masked
    # The masked run covers every character made of the value's bits alone: at most the
    # two edge characters, which mix with neighbouring bytes, stay.
    removed = len(stream) - len(masked) + len(MASK)
    assert removed >= 8 * len(secret.encode()) // 6 - 2


def test_values_shorter_than_four_characters_are_not_masked_and_counted() -> None:
    masker = Masker(["abc", "longer-secret", "abc"])  # the same value twice (e.g. also a live one)
    assert masker.mask("abc and longer-secret") == f"abc and {MASK}"
    assert masker.short_count == 1
    assert masker.short_secrets_note is not None and "1 secret value" in masker.short_secrets_note


def test_each_line_of_a_multiline_secret_is_masked_alone() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----"
    masker = Masker([key])
    log = "line one\nMIIEvQIBADANBgkqhkiG9w0B\nline three"
    assert "MIIEvQIBADANBgkqhkiG9w0B" not in masker.mask(log)
    assert masker.mask(key) == MASK


def test_longer_overlapping_secret_wins_and_no_secret_means_identity() -> None:
    masker = Masker(["password", "password-long"])
    assert masker.mask("x password-long y") == f"x {MASK} y"
    assert Masker([]).mask("nothing to hide") == "nothing to hide"
    assert not Masker(["", "ab"])


def test_each_automaton_of_short_forms_gets_a_guard_that_masks_only_its_forms_copies() -> None:
    """A group of short forms gets its longest form repeated to ``GUARD_LENGTH`` bytes in front
    (the library's rare-byte prefilter, slow on ids and hashes, is then off); a group with a
    form that long already is left as it is, and a run of copies is masked whole."""
    group = [b"62656e6368", b"YmVuY2g", b"bench"]
    patterns = automaton_patterns(group)
    assert patterns[1:] == group and len(patterns[0]) >= GUARD_LENGTH
    assert patterns[0] == group[0] * (len(patterns[0]) // len(group[0]))
    long_group = [b"x" * GUARD_LENGTH, b"bench"]
    assert automaton_patterns(long_group) == long_group
    value = "5f0c2a9e-8d1b-4c3e-9a7f-0b6d2e4c8a1f"
    masker = Masker([value])
    assert masker.max_form_length == len(value.encode().hex())  # the guard is not a form
    hex_form = value.encode().hex().upper()  # the longest form (its upper case sorts first)
    masked = masker.mask(f"a {hex_form * 10} b {value * 3}c")
    head, tail = masked.split(" b ")
    assert head.startswith("a ") and head[2:].replace(MASK, "") == "" and tail == MASK * 3 + "c"
    assert head[2:] != MASK * 10  # two guard spans and two single forms: fewer masks, all masked
