"""A work dir is made private and fresh, and goes whole whatever the recipe left in it, and
nothing outside it goes with it: the shallow path (files and an empty ``tmp``) and the full walk
after it."""

from __future__ import annotations

import os
from pathlib import Path

from executor.sandbox.workdir import create_work_dir, remove_work_dir


def test_a_work_dir_is_fresh_and_private_and_its_root_is_made_when_missing(tmp_path: Path) -> None:
    old = os.umask(0o077 | 0o200)  # a umask that would take the owner's write away
    try:
        first = create_work_dir(tmp_path / "missing" / "root", "task-1")
        second = create_work_dir(tmp_path / "missing" / "root", "task-1")
    finally:
        os.umask(old)
    assert first != second and first.parent == second.parent == tmp_path / "missing" / "root"
    for work in (first, second):
        assert work.name.startswith("task-1-")
        assert work.stat().st_mode & 0o777 == 0o700 and (work / "tmp").is_dir()


def test_what_a_trivial_recipe_leaves_goes(tmp_path: Path) -> None:
    work = create_work_dir(tmp_path / "work", "trivial")
    (work / "report.json").write_text("{}")
    assert remove_work_dir(work) and not work.exists()


def test_links_are_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the recipe's")
    work = create_work_dir(tmp_path / "work", "links")
    (work / "to-a-dir").symlink_to(outside)
    (work / "to-a-file").symlink_to(outside / "keep.txt")
    (work / "tmp" / "nested-link").symlink_to(outside)  # a full tmp: the walk takes over
    assert remove_work_dir(work) and not work.exists()
    assert (outside / "keep.txt").read_text() == "not the recipe's"


def test_deep_and_locked_trees_go_by_the_walk(tmp_path: Path) -> None:
    work = create_work_dir(tmp_path / "work", "deep")
    deep = work / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "data").write_text("x" * 100)
    (work / "a" / "file").write_text("y")
    os.chmod(work / "a" / "b", 0o500)  # the recipe took away its own write permission
    os.chmod(work / "tmp", 0)
    assert remove_work_dir(work) and not work.exists()
