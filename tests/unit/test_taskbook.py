"""The pool's task book: what a Task tells its runner is kept when no runner is up to hear it.

``RunnerLink`` is a Task's parent: it writes each notice into the book, then tells the runner
listed in the pool's directory (a real pykka actor here). With no runner listed the tell goes
nowhere, as it does while a crashed runner restarts, and the book still has it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from executor.pool.messages import RUNNER, TaskSettled, WeightKnown
from executor.pool.taskbook import RunnerLink, TaskBook, TaskEntry
from executor.supervision import ChildExited, Directory


class Heard(pykka.ThreadingActor):
    """A stand-in runner that records what it receives, and what the book said at that moment."""

    def __init__(self, book: TaskBook, heard: list[Any], event: threading.Event) -> None:
        super().__init__()
        self.book, self.heard, self.event = book, heard, event

    def on_receive(self, message: Any) -> Any:
        entry = self.book.get(message.urn)
        self.heard.append((message, entry is not None and entry.weighed))
        self.event.set()
        return None


class Idle(pykka.ThreadingActor):
    """A stand-in Task that does nothing until it is stopped."""


@pytest.fixture
def book() -> Iterator[TaskBook]:
    """A fresh book; every actor its entries hold is stopped after the test."""
    fresh = TaskBook()
    yield fresh
    fresh.stop_all(10)


def test_notices_told_while_no_runner_is_up_are_kept_in_the_book(book: TaskBook) -> None:
    directory = Directory()  # no runner listed: it is restarting
    link = RunnerLink(book, directory)
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    link.tell(WeightKnown("urn:a", 1.0))
    link.tell(TaskSettled("urn:a", "SUCCESS"))
    link.tell(ChildExited("task-1", 1, failed=False))
    entry = book.get("urn:a")
    assert entry is not None
    assert (entry.weight, entry.weighed, entry.settled) == (1.0, True, True)
    assert entry.exited == ChildExited("task-1", 1, failed=False)
    assert book.produced_result and book.live() == 0 and len(book) == 1  # left for a runner to pop


def test_a_listed_runner_hears_each_notice_after_the_book_has_it(book: TaskBook) -> None:
    heard: list[Any] = []
    event = threading.Event()
    directory = Directory()
    runner = Heard.start(book, heard, event)
    directory.put(RUNNER, runner)
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    try:
        RunnerLink(book, directory).tell(WeightKnown("urn:a", 0.25))
        assert event.wait(10)
    finally:
        runner.stop(block=True, timeout=10)
    assert heard == [(WeightKnown("urn:a", 0.25), True)]  # the book had it when the runner heard it
    assert book.get("urn:a") == TaskEntry("urn:a", "task-1", 0.25, weighed=True)


def test_names_stay_unique_across_runner_incarnations_and_stop_all_stops_every_live_task(
    book: TaskBook,
) -> None:
    names = {book.new_name() for _ in range(3)}
    assert len(names) == 3  # one counter for the pool, not one per runner
    refs = []
    for i, name in enumerate(sorted(names)):
        entry = TaskEntry(f"urn:{i}", name, 0.25, ref=Idle.start())
        book.add(entry)
        refs.append(entry.ref)
    assert book.live() == 3
    assert book.stop_all(10) == []
    assert not any(ref is not None and ref.is_alive() for ref in refs)


def test_a_settled_notice_is_written_to_the_book_and_not_told_to_the_runner(book: TaskBook) -> None:
    """The runner reads ``settled`` from the book; only the notices it acts on wake it."""
    heard: list[Any] = []
    event = threading.Event()
    directory = Directory()
    runner = Heard.start(book, heard, event)
    directory.put(RUNNER, runner)
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    try:
        link = RunnerLink(book, directory)
        link.tell(TaskSettled("urn:a", "SUCCESS"))
        link.tell(WeightKnown("urn:a", 0.5))  # after it in the runner's inbox, were it told
        assert event.wait(10)
    finally:
        runner.stop(block=True, timeout=10)
    assert heard == [(WeightKnown("urn:a", 0.5), True)]
    entry = book.get("urn:a")
    assert entry is not None and entry.settled and book.produced_result
