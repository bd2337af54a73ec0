"""The outbox: durable, private, ordered, and tolerant of corrupt files and odd keys."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from executor.errors import BadInputError
from executor.reporting.outbox import Outbox, file_stem


def test_put_pending_remove(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.put("req-1", {"status": "SUCCESS"})
    box.put("req-2", {"status": "FAILURE"})
    assert len(box) == 2 and box.has("req-1") and not box.has("req-3")
    assert box.pending() == [("req-1", {"status": "SUCCESS"}), ("req-2", {"status": "FAILURE"})]
    box.remove("req-1")
    box.remove("req-1")  # twice is fine
    assert box.pending() == [("req-2", {"status": "FAILURE"})]


def test_survives_a_new_instance_and_keeps_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for i in (3, 1, 2):
        box.put(f"k{i}", {"i": i})
    box.put("k3", {"i": 33})  # a replacement counts as newest
    assert [k for k, _ in Outbox(tmp_path).pending()] == ["k1", "k2", "k3"]
    assert Outbox(tmp_path).pending()[-1] == ("k3", {"i": 33})


def test_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    directory.mkdir(mode=0o755)
    box = Outbox(directory)
    box.put("req", {"report": "masked log"})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [path] = list(directory.iterdir())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put("good", {"ok": True})
    (tmp_path / "bad.json").write_text("{truncated")
    (tmp_path / "wrong.json").write_text(json.dumps({"key": 1, "stored_at_ns": 0, "record": {}}))
    assert box.pending() == [("good", {"ok": True})]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["bad.json.corrupt", "good.json", "wrong.json.corrupt"]
    assert len(box) == 1


def test_only_stale_temp_files_are_cleaned(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".req.json.abc.tmp", tmp_path / ".other.json.def.tmp"
    stale.write_text("{")
    fresh.write_text("{")  # another writer may be about to rename it
    old = time.time() - 3600
    os.utime(stale, (old, old))
    box = Outbox(tmp_path)
    assert box.pending() == [] and list(tmp_path.iterdir()) == [fresh]


def test_a_new_instance_does_not_disturb_a_writer(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(100):
                Outbox(tmp_path).put(f"k{i}", {"i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        Outbox(tmp_path)  # what persist_result does on every call
    thread.join(timeout=30)
    assert errors == [] and len(Outbox(tmp_path)) == 100


ODD_KEYS = ["../../etc/passwd", "urn:li:dataHubExecutionRequest:a/b", ".hidden", "a" * 300, "sp ace\nline"]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_stay_inside_and_round_trip(tmp_path: Path, key: str) -> None:
    box = Outbox(tmp_path / "box")
    box.put(key, {"k": key})
    assert box.has(key) and box.pending() == [(key, {"k": key})]
    assert [p.parent for p in (tmp_path / "box").iterdir()] == [tmp_path / "box"]
    assert not file_stem(key).startswith(".") and "/" not in file_stem(key)
    box.remove(key)
    assert len(box) == 0


def test_distinct_keys_get_distinct_files() -> None:
    assert file_stem("a/b") != file_stem("a_b") != file_stem("a:b")
    assert file_stem("0c5b9a6e-1f7d-4d1e-9a61-3b2f") == "0c5b9a6e-1f7d-4d1e-9a61-3b2f"


def test_bad_records_and_keys(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    with pytest.raises(BadInputError):
        box.put("k", {"x": object()})
    with pytest.raises(BadInputError):
        box.put("", {})
    assert os.listdir(tmp_path) == []


def test_concurrent_writers_and_reader(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(30):
                box.put(f"w{n}-{i}", {"i": i})
                if i % 3 == 0:
                    box.remove(f"w{n}-{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        box.pending()  # must never see a half-written file
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and len(box) == 60
    assert not any(p.name.endswith(".corrupt") for p in tmp_path.iterdir())


class CountingOutbox(Outbox):
    """An outbox that counts how many files it parses."""

    parsed = 0

    def _load(self, path: Path) -> tuple[int, str, dict[str, object]] | None:  # type: ignore[override]
        self.parsed += 1
        return super()._load(path)


def test_pending_parses_only_files_that_changed(tmp_path: Path) -> None:
    box = CountingOutbox(tmp_path)
    for i in range(3):
        box.put(f"k{i}", {"i": i})
    # What this instance wrote itself is not read back: the flush after a put reads nothing.
    assert [r for _, r in box.pending()] == [{"i": 0}, {"i": 1}, {"i": 2}] and box.parsed == 0
    assert len(box.pending()) == 3 and box.parsed == 0  # a flush again reads nothing
    Outbox(tmp_path).put("k1", {"i": 11})  # another writer (a Task) replaces one record
    assert dict(box.pending())["k1"] == {"i": 11} and box.parsed == 1
    Outbox(tmp_path).remove("k0")
    assert [k for k, _ in box.pending()] == ["k2", "k1"] and box.parsed == 1
    box.remove("k2")
    assert box.pending() == [("k1", {"i": 11})] and box.parsed == 1
    fresh = CountingOutbox(tmp_path)  # a restarted Reporter reads and verifies every file once
    assert fresh.pending() == [("k1", {"i": 11})] and fresh.parsed == 1


def test_a_record_is_durable_before_its_name_points_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New or replacing, a record's file is fsynced before its rename: a name never points at
    bytes a crash could still undo, so nothing reads (and sends) a record not yet durable."""
    box = Outbox(tmp_path)
    target = tmp_path / (file_stem("req") + ".json")
    seen: list[tuple[str, bytes | None]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the record's own file, not the directory
            seen.append(("file", target.read_bytes() if target.exists() else None))
        else:
            seen.append(("dir", None))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    box.put("req", {"i": 1})
    assert seen == [("file", None), ("dir", None)], "no name before the file's fsync"
    seen.clear()
    box.put("req", {"i": 2})
    [(kind, named), (last, _)] = seen
    assert kind == "file" and last == "dir"
    assert named is not None and named.endswith(b'{"i": 1}')  # the old record stays until then
    assert box.pending() == [("req", {"i": 2})]
    assert Outbox(tmp_path).pending() == [("req", {"i": 2})]


def test_a_record_cut_short_under_its_name_is_set_aside_not_delivered(tmp_path: Path) -> None:
    """A record cut short (or emptied) on disk under its name (a filesystem that loses data the
    fsync had): it is moved aside as corrupt, so the request is not counted as having
    a result waiting (``has``): it runs again, as after a crash before the put."""
    Outbox(tmp_path).put("req", {"status": "SUCCESS", "report": "x" * 100})
    path = tmp_path / (file_stem("req") + ".json")
    whole = path.read_bytes()
    for cut in (whole[: len(whole) // 2], b""):
        path.write_bytes(cut)
        box = Outbox(tmp_path)
        assert not box.has("req") and box.pending() == []
        assert (tmp_path / (path.name + ".corrupt")).exists()
        (tmp_path / (path.name + ".corrupt")).unlink()


def test_a_record_cut_inside_its_body_is_corrupt_not_a_forgery(tmp_path: Path) -> None:
    """A record damaged on disk can be cut inside its body as well as in its header: the body is
    shorter than the header says, so it is set aside as corrupt, not quarantined as not authentic; a cut
    right after the header too."""
    Outbox(tmp_path).put("req", {"status": "SUCCESS", "report": "x" * 100})
    path = tmp_path / (file_stem("req") + ".json")
    whole = path.read_bytes()
    header_end = whole.index(b"\n") + 1
    for cut in (whole[: header_end + (len(whole) - header_end) // 2], whole[:header_end]):
        path.write_bytes(cut)
        box = Outbox(tmp_path)
        assert not box.has("req") and box.pending() == []
        assert (tmp_path / (path.name + ".corrupt")).exists()
        assert not (tmp_path / (path.name + ".quarantined")).exists()
        (tmp_path / (path.name + ".corrupt")).unlink()


def test_a_failed_fsync_leaves_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EIO from the fsync of a record's file: the put raises and leaves neither the name nor
    its temp file (a record left there would make the runner skip its FAILURE, and be sent
    though never durable)."""
    box = Outbox(tmp_path)
    fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        box.put("req", {"status": "SUCCESS"})
    monkeypatch.setattr(os, "fsync", fsync)
    assert not box.has("req") and box.pending() == [] and len(box) == 0
    assert not any(tmp_path.glob(".*.tmp"))
    box.put("req", {"status": "FAILURE"})  # the runner's FAILURE is written, not skipped
    assert box.pending() == [("req", {"status": "FAILURE"})]
