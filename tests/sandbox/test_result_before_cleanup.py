"""The result is known before the clean-up, and the clean-up is still guaranteed.

``wait_result`` answers as soon as the tree is gone and the report read; ``wait`` (what frees a
Task's slot) only once the work dir and the cgroup are gone, and the result's callback (a Task's
hand-over) right after the clean-up, so the Task's turn does not run beside it. A crash between
the two leaves a work dir that the pool's start-up sweep removes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox import run_place as run_module
from executor.sandbox.workdir import create_work_dir, sweep_work_dirs

from .helpers import py


def test_the_result_is_known_before_the_work_dir_is_removed(
    make_spec: Callable[..., SandboxSpec], held_clean_up: tuple[threading.Event, threading.Event]
) -> None:
    removing, release = held_clean_up
    run = SandboxRun(make_spec(py("print('done')"), report_file="report.json"))
    run.start()
    try:
        result = run.wait_result(60)
        assert result is not None and result.outcome == "exited" and "done" in result.log_text
        assert removing.wait(30)
        assert run.work_dir is not None and run.work_dir.exists()  # not cleaned up yet...
        assert run.wait(0.05) is None  # ...so the run is not over for whoever frees its slot
    finally:
        release.set()
    assert run.wait(60) is result
    assert run.work_dir is not None and not run.work_dir.exists()


def test_the_sweep_removes_leftover_work_dirs_but_not_dot_entries(tmp_path: Path) -> None:
    root = tmp_path / "work"
    left = [create_work_dir(root, f"task-{i}") for i in range(2)]
    (left[0] / "tmp" / "deep").mkdir()
    (left[0] / "tmp" / "deep" / "file").write_text("x")
    left[1].chmod(0o500)  # a recipe may take its own write permission away
    cache = root / ".venvs"
    cache.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert sweep_work_dirs(root) == 2
    assert sorted(p.name for p in root.iterdir()) == [".venvs", "link"]
    assert outside.exists()
    assert sweep_work_dirs(tmp_path / "never-made") == 0


def test_a_callback_given_once_the_result_is_known_runs_at_once(
    make_spec: Callable[..., SandboxSpec],
) -> None:
    """``when_known`` after the end (a spawn that failed at once, a fast recipe): the callback
    runs now, on the caller's thread, with the same result; nothing waits for a thread."""
    run = SandboxRun(make_spec(py("print('done')")))
    run.start()
    result = run.wait(60)
    assert result is not None
    seen: list[object] = []
    run.when_known(lambda r: seen.append((r, threading.current_thread())))
    assert seen == [(result, threading.current_thread())]


def test_a_callback_that_raises_still_leaves_the_run_cleaned_up(
    make_spec: Callable[..., SandboxSpec], held_clean_up: tuple[threading.Event, threading.Event]
) -> None:
    """The result's callback runs on the supervisor thread after the clean-up (the Task's turn
    then has the interpreter to itself); its failure is logged, and ``wait`` still answers (a
    Task's slot is freed)."""
    removing, release = held_clean_up
    run = SandboxRun(make_spec(py("print('done')")))
    called = threading.Event()
    cleaned: list[bool] = []

    def failing(_result: object) -> None:
        cleaned.append(run.work_dir is not None and not run.work_dir.exists())
        called.set()
        raise RuntimeError("the receiver is gone")

    run.when_known(failing)  # before the start: the supervisor thread calls it
    run.start()
    try:
        assert removing.wait(30)
        assert run.wait_result(30) is not None  # known while the clean-up is held...
        assert not called.is_set(), "the callback ran before the clean-up"  # ...not handed over
    finally:
        release.set()
    result = run.wait(60)
    assert result is not None and result.outcome == "exited"
    assert called.is_set() and cleaned == [True]
    assert run.work_dir is not None and not run.work_dir.exists()


def test_a_second_callback_is_refused_not_swapped_for_the_first(
    make_spec: Callable[..., SandboxSpec],
) -> None:
    """The first callback is the launcher's hand-over to its Task: replacing it would leave the
    Task waiting for a result forever, so a second one is an error."""
    run = SandboxRun(make_spec(py("print('done')")))
    seen: list[object] = []
    run.when_known(seen.append)
    with pytest.raises(RuntimeError):
        run.when_known(lambda _result: None)
    run.start()
    result = run.wait(60)
    assert result is not None and seen == [result]


def test_a_work_dir_that_needs_a_walk_is_walked_after_the_hand_over(
    make_spec: Callable[..., SandboxSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe that leaves a deep tree: the few-syscall removal gives up before the hand-over,
    the callback runs, and only then is the tree walked (a deep tree does not hold the result
    back); the work dir and ``wait`` end as always."""
    calls: list[tuple[bool, bool]] = []
    called = threading.Event()
    remove = run_module.remove_work_dir

    def watched_remove(path: Path, deep: bool = True) -> bool:
        calls.append((deep, called.is_set()))
        return remove(path, deep=deep)

    monkeypatch.setattr(run_module, "remove_work_dir", watched_remove)
    run = SandboxRun(make_spec(py("import os; os.makedirs('a/b/c'); open('a/b/c/f', 'w').write('x')")))
    run.when_known(lambda _result: called.set())
    run.start()
    result = run.wait(60)
    assert result is not None and result.outcome == "exited"
    assert calls == [(False, False), (True, True)]  # quick before the callback, the walk after it
    assert run.work_dir is not None and not run.work_dir.exists()


def test_a_wide_work_dir_is_removed_after_the_hand_over(make_spec: Callable[..., SandboxSpec]) -> None:
    """A recipe that leaves many empty files (the disk limit does not see them) in its work dir:
    the few-syscall removal takes on a few dozen entries at most, so the callback (a Task's
    hand-over) runs with the files still there, and only then are they removed."""
    seen: list[bool] = []
    code = "for i in range(300): open(f'f{i}', 'w').close()"
    run = SandboxRun(make_spec(py(code)))
    run.when_known(lambda _result: seen.append(run.work_dir is not None and (run.work_dir / "f299").exists()))
    run.start()
    result = run.wait(60)
    assert result is not None and result.outcome == "exited"
    assert seen == [True]  # handed over before the files were removed
    assert run.work_dir is not None and not run.work_dir.exists()
