"""Forged outbox records are quarantined, never delivered (issue 10, point 3, third bullet).

The end-to-end attack (a hostile recipe writing a SUCCESS into the outbox of a running
executor) is in ``test_privilege.py``; here each way of forging a record is tried on the
``Outbox`` itself, with the same files a recipe could write.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from executor.reporting.outbox import Outbox
from executor.reporting.outbox_auth import KEY_FILE, sign

URN = "urn:li:dataHubExecutionRequest:victim"


def pool_outbox(state: Path, pool: str = "default") -> Outbox:
    return Outbox(state / "pools" / pool / "outbox")


def success_record(urn: str = URN) -> dict[str, object]:
    return {"urn": urn, "aspect": {"status": "SUCCESS", "report": "forged"}, "status": "SUCCESS",
            "release": False}


def test_the_key_is_private_and_made_once(tmp_path: Path) -> None:
    box = pool_outbox(tmp_path)
    key = tmp_path / "pools" / "default" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_text()
    pool_outbox(tmp_path).put("victim", success_record())
    assert key.read_text() == first and box.has("victim")


@pytest.mark.parametrize("mac", [None, "0" * 64, "not hex"])
def test_a_record_without_the_right_mac_is_quarantined(tmp_path: Path, mac: str | None) -> None:
    box = pool_outbox(tmp_path)
    forged = {"key": "victim", "pool": "default", "stored_at_ns": 1, "record": success_record()}
    if mac is not None:
        forged["mac"] = mac
    (box.directory / "victim.json").write_text(json.dumps(forged))
    assert not box.has("victim")
    assert box.pending() == []
    assert [p.name for p in box.directory.iterdir()] == ["victim.json.quarantined"]


def test_a_record_signed_with_a_guessed_key_is_quarantined(tmp_path: Path) -> None:
    box = pool_outbox(tmp_path)
    record = success_record()
    forged = {"key": "victim", "pool": "default", "stored_at_ns": 1, "record": record,
              "mac": sign(b"\0" * 32, "default", "victim", 1, record)}
    (box.directory / "victim.json").write_text(json.dumps(forged))
    assert box.pending() == [] and not box.has("victim")


def test_a_real_record_copied_to_another_request_or_pool_is_quarantined(tmp_path: Path) -> None:
    box, other = pool_outbox(tmp_path), pool_outbox(tmp_path, "other")
    box.put("mine", success_record("urn:li:dataHubExecutionRequest:mine"))
    real = (box.directory / "mine.json").read_bytes()
    (box.directory / "victim.json").write_bytes(real)  # renamed: its key says "mine"
    (other.directory / "mine.json").write_bytes(real)  # another pool's outbox
    assert [k for k, _ in box.pending()] == ["mine"]
    assert other.pending() == []
    assert (box.directory / "victim.json.quarantined").exists()
    assert (other.directory / "mine.json.quarantined").exists()


def test_a_record_whose_urn_names_another_request_is_quarantined(tmp_path: Path) -> None:
    box = pool_outbox(tmp_path)
    box.put("mine", success_record(URN))  # the executor itself would never write this
    assert box.pending() == []


def test_a_forged_file_does_not_block_the_real_result(tmp_path: Path) -> None:
    """Pre-placing a file must not make ``has`` true, or the real result would never be stored."""
    box = pool_outbox(tmp_path)
    (box.directory / "victim.json").write_text(json.dumps({"key": "victim", "stored_at_ns": 1,
                                                           "record": success_record()}))
    assert not box.has("victim")
    box.put("victim", {"urn": URN, "status": "FAILURE"})
    assert box.pending() == [("victim", {"urn": URN, "status": "FAILURE"})]


def test_a_symlink_or_fifo_in_place_of_a_record_is_set_aside(tmp_path: Path) -> None:
    import os

    box = pool_outbox(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("{}")
    (box.directory / "link.json").symlink_to(secret)
    os.mkfifo(box.directory / "fifo.json")
    assert box.pending() == []  # returns at once: a FIFO is never opened for a blocking read
    assert sorted(p.name for p in box.directory.iterdir()) == ["fifo.json.corrupt", "link.json.corrupt"]


def test_a_recipe_with_the_key_file_but_not_the_token_cannot_sign(tmp_path: Path) -> None:
    """Same uid, no bwrap: the key file is readable, but the MAC key also needs the token."""
    box = Outbox(tmp_path / "pools" / "default" / "outbox", binding="the-gms-token-1234")
    stolen = bytes.fromhex((tmp_path / "pools" / "default" / KEY_FILE).read_text())
    record = success_record()
    forged = {"key": "victim", "pool": "default", "stored_at_ns": 1, "record": record,
              "mac": sign(stolen, "default", "victim", 1, record)}
    (box.directory / "victim.json").write_text(json.dumps(forged))
    assert box.pending() == []
    box.put("victim", record)
    assert Outbox(box.directory, binding="the-gms-token-1234").has("victim")
    assert not Outbox(box.directory, binding="another-token-5678").has("victim")  # rotated token
