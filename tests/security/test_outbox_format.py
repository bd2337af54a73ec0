"""The outbox's record format: the MAC covers the record's bytes as written, and records an
earlier version wrote (one JSON object, MAC over a canonical dump) are still read and delivered.

Every change to a record file's bytes, header or body, gets it quarantined; an upgrade from the
previous format loses nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.reporting.outbox import MAX_RECORD_BYTES, Outbox
from tests.fixtures.outbox_previous import write_previous_format

TOKEN = "made-up-gms-token-0001"
URN = "urn:li:dataHubExecutionRequest:req-1"
HEADER_EDITS: dict[str, object] = {"key": "req-2", "pool": "other", "stored_at_ns": 8, "mac": "0" * 64,
                                   "format": 1}


def big_record() -> dict[str, object]:
    """A result whose report needs escaping (quotes, backslashes, newlines, non-ASCII) and is
    written in several slices."""
    report = "".join(f'{i} line "quoted" \\ back \u00e9\n' for i in range(20000))
    return {"urn": URN, "aspect": {"status": "SUCCESS", "report": report}, "status": "SUCCESS",
            "release": False}


def pool_outbox(state: Path, token: str = TOKEN) -> Outbox:
    return Outbox(state / "pools" / "default" / "outbox", binding=token)


def previous_format(box: Outbox, key: str, record: dict[str, object], token: str = TOKEN) -> Path:
    """A record file exactly as the previous version's ``Outbox.put`` wrote it."""
    return write_previous_format(box.directory / f"{key}.json", token, box.pool_id, key, 7, record)


def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    pool_outbox(tmp_path).put("req-1", big_record())
    assert pool_outbox(tmp_path).pending() == [("req-1", big_record())]


def test_a_record_of_the_previous_format_is_still_read(tmp_path: Path) -> None:
    box = pool_outbox(tmp_path)
    previous_format(box, "req-1", big_record())
    fresh = pool_outbox(tmp_path)
    assert fresh.has("req-1") and fresh.pending() == [("req-1", big_record())]
    assert not pool_outbox(tmp_path, token="another-made-up-token").has("req-1")  # still token-bound


@pytest.mark.parametrize("edit", ["report", "status", "key", "pool", "stored_at_ns", "mac", "format"])
def test_any_change_to_a_record_file_quarantines_it(tmp_path: Path, edit: str) -> None:
    pool_outbox(tmp_path).put("req-1", big_record())
    path = pool_outbox(tmp_path).directory / "req-1.json"
    head, body = path.read_bytes().split(b"\n", 1)
    header = json.loads(head)
    if edit == "report":
        body = body.replace(b"499 line", b"498 line")
    elif edit == "status":
        body = body.replace(b'"status": "SUCCESS"', b'"status": "FAILURE"')
    else:
        header[edit] = HEADER_EDITS[edit]
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    box = pool_outbox(tmp_path)
    assert box.pending() == [] and not box.has("req-1")
    aside = ".corrupt" if edit == "format" else ".quarantined"  # another format is not ours to read
    assert [p.name for p in box.directory.iterdir()] == ["req-1.json" + aside]


def test_a_file_over_the_cap_is_set_aside_unread(tmp_path: Path) -> None:
    box = pool_outbox(tmp_path)
    with (box.directory / "huge.json").open("wb") as handle:
        handle.truncate(MAX_RECORD_BYTES + 1)  # sparse: costs no disk
    assert box.pending() == []
    assert [p.name for p in box.directory.iterdir()] == ["huge.json.corrupt"]
