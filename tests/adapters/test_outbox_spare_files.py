"""A delivered record's file is emptied and written again by the next result, never a file that
is not the one the outbox emptied (``executor.reporting.spare_files``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from executor.reporting.outbox import Outbox
from executor.reporting.spare_files import MAX_KEPT


def _spares(directory: Path) -> list[Path]:
    return sorted(directory.glob(".spare-*.tmp"))


def test_a_delivered_records_file_is_emptied_and_holds_the_next_result(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.put("req-1", {"status": "SUCCESS", "report": "masked lines of req-1"})
    inode = (box.directory / "req-1.json").stat().st_ino
    box.remove("req-1")
    [spare] = _spares(box.directory)
    assert spare.stat().st_size == 0 and spare.stat().st_ino == inode  # nothing of req-1 stays
    assert box.pending() == [] and not box.has("req-1")
    box.put("req-2", {"status": "FAILURE"})
    assert _spares(box.directory) == [] and (box.directory / "req-2.json").stat().st_ino == inode
    assert box.pending() == [("req-2", {"status": "FAILURE"})]
    assert Outbox(box.directory).pending() == [("req-2", {"status": "FAILURE"})]  # as read back


def test_at_most_max_kept_files_wait_and_the_rest_are_removed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    for i in range(MAX_KEPT + 3):
        box.put(f"req-{i}", {"i": i})
    for i in range(MAX_KEPT + 3):
        box.remove(f"req-{i}")
    assert len(_spares(box.directory)) == MAX_KEPT and box.pending() == []
    assert sorted(os.listdir(box.directory)) == sorted(p.name for p in _spares(box.directory))


def test_a_kept_name_swapped_for_a_link_is_dropped_and_its_target_untouched(tmp_path: Path) -> None:
    """A recipe running as the executor's user may replace a kept file with a symlink or a hard
    link to another of the executor's files: the next result goes to a new file instead."""
    box = Outbox(tmp_path / "outbox")
    victim = tmp_path / "victim"
    victim.write_text("the executor's own file")
    for how in ("symlink", "hardlink"):
        box.put("req-1", {"status": "SUCCESS"})
        box.remove("req-1")
        [spare] = _spares(box.directory)
        spare.unlink()
        spare.symlink_to(victim) if how == "symlink" else os.link(victim, spare)
        box.put("req-2", {"status": "FAILURE"})
        assert victim.read_text() == "the executor's own file", how
        assert not spare.exists() and not spare.is_symlink(), how  # the swapped name is dropped
        assert box.pending() == [("req-2", {"status": "FAILURE"})], how
        box.remove("req-2")
        for left in _spares(box.directory):
            left.unlink()


def test_a_file_not_plain_is_removed_not_kept(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    victim = tmp_path / "victim"
    victim.write_text("kept as it is")
    os.link(victim, box.directory / "req-9.json")  # two links: never emptied
    box.remove("req-9")
    assert victim.read_text() == "kept as it is" and _spares(box.directory) == []
    assert not (box.directory / "req-9.json").exists()


def test_kept_files_of_an_instance_gone_a_minute_are_swept(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.put("req-1", {"status": "SUCCESS"})
    box.remove("req-1")
    [spare] = _spares(box.directory)
    Outbox(box.directory)
    assert spare.exists()  # another instance may still use it
    old = time.time() - 120
    os.utime(spare, (old, old))
    Outbox(box.directory)
    assert not spare.exists()
    box.put("req-2", {"status": "FAILURE"})  # its kept file is gone: a new one is made
    assert box.pending() == [("req-2", {"status": "FAILURE"})]
