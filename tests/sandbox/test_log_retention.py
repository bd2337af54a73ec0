"""Task-log retention from an index: the directory is listed once, then each run's log is
added and the oldest removed without listing it again, until the next listing is due."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from executor.sandbox import log_retention
from executor.sandbox.log_retention import LogIndex


def make_logs(directory: Path, names: list[str], age_s: float = 0.0) -> None:
    """Files ``names`` with mtimes one second apart, the first the oldest."""
    base = time.time() - age_s - len(names)
    for offset, name in enumerate(names):
        path = directory / name
        path.write_text(name)
        os.utime(path, (base + offset, base + offset))


def logs_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.endswith(".log")}


def no_listing(*_args: object, **_kw: object) -> object:
    raise AssertionError("the directory was listed again")


def test_the_first_prune_lists_and_later_ones_go_by_the_index(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    make_logs(tmp_path, [f"old{i}.log" for i in range(5)])
    (tmp_path / "notes.txt").write_text("not a task log")
    (tmp_path / "link.log").symlink_to(tmp_path / "notes.txt")
    index = LogIndex(tmp_path)
    assert index.prune("old4.log", keep_files=3, keep_days=None) == 2
    assert logs_in(tmp_path) == {"old2.log", "old3.log", "old4.log", "link.log"}
    monkeypatch.setattr(log_retention, "scan_and_prune", no_listing)
    for run in range(3):
        (tmp_path / f"run{run}.log").write_text("this run")
        assert index.prune(f"run{run}.log", keep_files=3, keep_days=None) == 1
    assert logs_in(tmp_path) == {"run0.log", "run1.log", "run2.log", "link.log"}
    assert (tmp_path / "notes.txt").exists(), "only our own logs are ever removed"


def test_an_old_log_goes_by_age_without_a_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_logs(tmp_path, ["ancient.log"], age_s=30 * 86400)
    make_logs(tmp_path, ["recent.log"])
    index = LogIndex(tmp_path)
    assert index.prune("recent.log", keep_files=None, keep_days=None) == 0
    monkeypatch.setattr(log_retention, "scan_and_prune", no_listing)
    (tmp_path / "new.log").write_text("this run")
    assert index.prune("new.log", keep_files=None, keep_days=7) == 1
    assert logs_in(tmp_path) == {"recent.log", "new.log"}


def test_a_log_removed_by_someone_else_is_no_error(tmp_path: Path) -> None:
    make_logs(tmp_path, ["a.log", "b.log"])
    index = LogIndex(tmp_path)
    assert index.prune("b.log", keep_files=2, keep_days=None) == 0
    (tmp_path / "a.log").unlink()
    (tmp_path / "c.log").write_text("this run")
    assert index.prune("c.log", keep_files=2, keep_days=None) == 0  # a.log was the one to go
    assert logs_in(tmp_path) == {"b.log", "c.log"}


def test_a_due_listing_sees_logs_put_there_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_logs(tmp_path, ["a.log"])
    index = LogIndex(tmp_path)
    index.prune("a.log", keep_files=1, keep_days=None)
    make_logs(tmp_path, ["foreign.log"], age_s=60)  # older than a.log, unknown to the index
    monkeypatch.setattr(log_retention, "RESCAN_S", 0.0)  # the next prune lists again
    (tmp_path / "b.log").write_text("this run")
    assert index.prune("b.log", keep_files=1, keep_days=None) == 2
    assert logs_in(tmp_path) == {"b.log"}


def test_a_log_its_run_removed_does_not_push_a_real_one_out(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run never given its input removes its own log (``SandboxRun``'s clean-up) and takes it
    out of the index: it must not count toward ``keep_files`` until the next listing."""
    make_logs(tmp_path, ["old0.log", "old1.log"])
    index = LogIndex(tmp_path)
    assert index.prune("old1.log", keep_files=3, keep_days=None) == 0
    monkeypatch.setattr(log_retention, "scan_and_prune", no_listing)
    (tmp_path / "unrun.log").write_text("spawned, never given its input")
    assert index.prune("unrun.log", keep_files=3, keep_days=None) == 0
    (tmp_path / "unrun.log").unlink()
    index.forget("unrun.log")
    (tmp_path / "next.log").write_text("the next run")
    assert index.prune("next.log", keep_files=3, keep_days=None) == 0
    assert logs_in(tmp_path) == {"old0.log", "old1.log", "next.log"}


def test_a_log_still_being_written_is_not_taken_for_the_oldest(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The index keeps logs in the order they were added; a long run's log, added first but
    written to since, is judged by its real mtime, so a newer finished log goes before it."""
    make_logs(tmp_path, ["long-run.log"])
    index = LogIndex(tmp_path)
    assert index.prune("long-run.log", keep_files=2, keep_days=None) == 0
    monkeypatch.setattr(log_retention, "scan_and_prune", no_listing)
    (tmp_path / "short.log").write_text("a short run")
    assert index.prune("short.log", keep_files=2, keep_days=None) == 0
    later = time.time() + 5
    os.utime(tmp_path / "long-run.log", (later, later))  # the long run writes on
    (tmp_path / "next.log").write_text("the next run")
    assert index.prune("next.log", keep_files=2, keep_days=None) == 1
    assert logs_in(tmp_path) == {"long-run.log", "next.log"}
