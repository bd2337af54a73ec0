"""The pool's task book: what a Task tells its runner is kept when no runner is up to hear it.

``RunnerLink`` is a Task's parent: it writes each notice into the book, then tells the runner
listed in the pool's directory (a real pykka actor here). With no runner listed the tell goes
nowhere, as it does while a crashed runner restarts, and the book still has it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from loguru import logger

from executor.pool.messages import POLLER, RUNNER, Admitted, Capacity, TaskSettled, TrimSoon, WeightKnown
from executor.pool.runner_link import RunnerLink
from executor.pool.taskbook import Added, Room, TaskBook, TaskEntry
from executor.supervision import ChildExited, Directory
from tests.faults.ledger import wait_until


class Heard(pykka.ThreadingActor):
    """A stand-in runner that records what it receives, and what the book said at that moment."""

    def __init__(self, book: TaskBook, heard: list[Any], event: threading.Event) -> None:
        super().__init__()
        self.book, self.heard, self.event = book, heard, event

    def on_receive(self, message: Any) -> Any:
        entry = self.book.get(getattr(message, "urn", ""))
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


@dataclass
class Listening:
    """A stand-in runner listed in a directory, and what it has heard."""

    directory: Directory
    heard: list[Any]
    event: threading.Event


@pytest.fixture
def runner(book: TaskBook) -> Iterator[Listening]:
    """A ``Heard`` runner listed as the pool's runner; stopped after the test."""
    listening = Listening(Directory(), [], threading.Event())
    ref = Heard.start(book, listening.heard, listening.event)
    listening.directory.put(RUNNER, ref)
    yield listening
    ref.stop(block=True, timeout=10)


def test_notices_told_while_no_runner_is_up_are_kept_in_the_book(book: TaskBook) -> None:
    directory = Directory()  # no runner listed: it is restarting
    link = RunnerLink(book, directory)
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    link.tell(WeightKnown("urn:a", 1.0))
    link.tell(TaskSettled("urn:a", "SUCCESS"))
    link.tell(ChildExited("task-1", 1, failed=True))  # a crash: the runner reports it, then pops
    entry = book.get("urn:a")
    assert entry is not None
    assert (entry.weight, entry.weighed, entry.settled) == (1.0, True, True)
    assert entry.exited == ChildExited("task-1", 1, failed=True)
    assert book.produced_result and book.live() == 0 and len(book) == 1  # left for a runner to pop


def test_an_orderly_end_gives_its_room_back_with_no_runner_up(book: TaskBook) -> None:
    """A Task that ended in order needs no runner: its ``RunnerLink`` pops the entry, admits what
    now fits, wakes the parked poller and sets the gauge, on the Task's own thread."""
    poller = Listening(Directory(), [], threading.Event())
    ref = Heard.start(book, poller.heard, poller.event)
    waiting = Inbox.start([], threading.Event())
    gauge: list[bool] = []
    try:
        poller.directory.put(POLLER, ref)  # no runner listed: it is restarting
        link = RunnerLink(book, poller.directory, lambda: gauge.append(True))
        book.add(TaskEntry("urn:a", book.new_name(), 1.0, weighed=True, admitted=True))
        book.add(TaskEntry("urn:b", book.new_name(), 0.5, ref=waiting, weighed=True))
        assert book.poller_room(Room.of(2, 0)) == 0  # parks; once a ends, b takes half of its room
        link.tell(ChildExited("task-1", 1, failed=False))
        assert book.get("urn:a") is None and book.is_admitted("urn:b") and gauge == [True]
        assert poller.event.wait(10) and [m for m, _ in poller.heard] == [Capacity()]
        link.tell(ChildExited("task-1", 1, failed=False))  # a repeat: handled once
        assert gauge == [True]
    finally:
        waiting.stop(block=True, timeout=10)
        ref.stop(block=True, timeout=10)


def test_the_runner_hears_of_an_orderly_end_only_to_schedule_one_trim_look(
    book: TaskBook, runner: Listening
) -> None:
    """Tasks back to back each leave the book empty: the runner is told ``TrimSoon`` once while
    its look is scheduled, again once the look has ended."""
    link = RunnerLink(book, runner.directory)
    for n in range(3):
        book.add(TaskEntry(f"urn:{n}", book.new_name(), 0.5))
        link.tell(ChildExited(f"task-{n + 1}", 1, failed=False))
    wait_until(lambda: runner.heard, 10, "the runner to hear of the empty book")
    assert book.trim_wait(60.0) is not None  # the look is on: rested too little, look again
    book.add(TaskEntry("urn:live", book.new_name(), 0.5))
    assert book.trim_wait(60.0) is None  # a Task is live: the look ends
    link.tell(ChildExited("task-4", 1, failed=False))
    wait_until(lambda: len(runner.heard) == 2, 10, "a second look once the first had ended")
    assert [m for m, _ in runner.heard] == [TrimSoon(), TrimSoon()]
    assert book.trim_wait(0.0) == 0.0 and not book.trim_armed()  # rested: trim now, look over


def test_a_listed_runner_hears_each_notice_after_the_book_has_it(book: TaskBook, runner: Listening) -> None:
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    RunnerLink(book, runner.directory).tell(WeightKnown("urn:a", 0.25))
    assert runner.event.wait(10)
    assert runner.heard == [(WeightKnown("urn:a", 0.25), True)]  # the book had it when the runner heard it
    # A weight other than the one counted is told (capacity changes); it fitted: admitted at once.
    assert book.get("urn:a") == TaskEntry("urn:a", "task-1", 0.25, weighed=True, admitted=True)


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


def test_a_settled_notice_is_written_to_the_book_and_not_told_to_the_runner(
    book: TaskBook, runner: Listening
) -> None:
    """The runner reads ``settled`` from the book; only the notices it acts on wake it."""
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    link = RunnerLink(book, runner.directory)
    link.tell(TaskSettled("urn:a", "SUCCESS"))
    link.tell(WeightKnown("urn:a", 0.25))  # a weight the runner must hear: after it, were it told
    assert runner.event.wait(10)
    assert runner.heard == [(WeightKnown("urn:a", 0.25), True)]
    entry = book.get("urn:a")
    assert entry is not None and entry.settled and book.produced_result


class Inbox(pykka.ThreadingActor):
    """A stand-in Task that records its messages."""

    def __init__(self, heard: list[Any], event: threading.Event) -> None:
        super().__init__()
        self.heard, self.event = heard, event

    def on_receive(self, message: Any) -> Any:
        self.heard.append(message)
        self.event.set()
        return None


def test_a_task_whose_weight_fits_is_admitted_in_the_book_without_the_runner(
    book: TaskBook, runner: Listening
) -> None:
    """The default weight, room for it: admitted on the Task's own thread; the runner, which
    counted that weight already, is not woken."""
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    RunnerLink(book, runner.directory).tell(WeightKnown("urn:a", 0.5))
    assert book.is_admitted("urn:a")
    RunnerLink(book, runner.directory).tell(ChildExited("task-1", 1, failed=True))
    assert runner.event.wait(10)
    assert [message for message, _ in runner.heard] == [ChildExited("task-1", 1, failed=True)]


def test_a_task_that_must_wait_is_logged_without_the_runner_and_admission_stays_oldest_first(
    book: TaskBook, runner: Listening
) -> None:
    """Full: a heavy Task waits, and the one behind it waits too although its 0.5 would fit
    beside the running 0.5: an older Task waits for room. The runner hears only the heavy one's
    weight (it changes what the runner counted); a weight as counted that must wait is logged
    here as the runner logs it, naming the oldest Task left out, and wakes no runner: the end
    that frees the room admits the waiting ones, oldest first."""
    heard: list[list[Any]] = [[], [], []]
    tasks = [Inbox.start(heard[n], threading.Event()) for n in range(3)]
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['message']} [{m.record['extra'].get('request')}]"),
                      level="INFO", filter=lambda r: r["extra"].get("component") == "pool/runner")
    try:
        for urn, ref in zip(("urn:run", "urn:heavy", "urn:light"), tasks, strict=True):
            book.add(TaskEntry(urn, book.new_name(), 0.5, ref=ref))
        link = RunnerLink(book, runner.directory, log=logger.bind(component="pool/runner"))
        link.tell(WeightKnown("urn:run", 0.5))
        link.tell(WeightKnown("urn:heavy", 1.0))
        link.tell(WeightKnown("urn:light", 0.5))
        link.tell(WeightKnown("urn:heavy", 1.0))  # a repeat, the weight as counted now
        assert [book.is_admitted(u) for u in ("urn:run", "urn:heavy", "urn:light")] == [True, False, False]
        assert lines == ["waiting for capacity: weight 1.00, 0.50 in use [heavy]"] * 2
        ended = book.get("urn:run")
        assert ended is not None
        link.tell(ChildExited(ended.name, 0, failed=False))
        assert [book.is_admitted(u) for u in ("urn:heavy", "urn:light")] == [True, False]
        wait_until(lambda: heard[1] == [Admitted()], 10, "the heavy Task to be told Admitted")
        runner_ref = runner.directory.get(RUNNER)
        assert runner_ref is not None
        runner_ref.ask("after every tell")  # the runner's inbox is in order: all told before it
        assert [message for message, _ in runner.heard] == [WeightKnown("urn:heavy", 1.0), "after every tell"]
        assert heard[0] == heard[2] == []  # run admitted itself in the book; light still waits
    finally:
        logger.remove(sink)
        for ref in tasks:
            ref.stop(block=True, timeout=10)


def test_a_task_that_exited_while_waiting_is_never_admitted(book: TaskBook) -> None:
    """Weighed, then crashed while it waited: its exit is in the book before a runner pops the
    entry, and admission passes it by (its weight would hold room no recipe uses)."""
    crashed = Inbox.start([], threading.Event())
    try:
        book.add(TaskEntry("urn:crashed", book.new_name(), 0.5, ref=crashed, weighed=True))
        book.add(TaskEntry("urn:next", book.new_name(), 1.0, ref=crashed, weighed=True))
        book.record(ChildExited("task-1", 1, failed=True))
        admitted, waiting, used = book.admit_waiting()
    finally:
        crashed.stop(block=True, timeout=10)
    assert ([e.urn for e in admitted], waiting, used) == (["urn:next"], None, 1.0)
    assert not book.is_admitted("urn:crashed")


def test_a_task_admitted_with_another_tells_it(book: TaskBook) -> None:
    """One Task's weighing may make room for an older one that waited: it is told ``Admitted``."""
    heard: list[Any] = []
    event = threading.Event()
    older = Inbox.start(heard, event)
    try:
        book.add(TaskEntry("urn:old", book.new_name(), 0.5, ref=older, weighed=True))
        book.add(TaskEntry("urn:new", book.new_name(), 0.5))
        RunnerLink(book, Directory()).tell(WeightKnown("urn:new", 0.5))
        assert event.wait(10)
    finally:
        older.stop(block=True, timeout=10)
    assert heard == [Admitted()]
    assert book.is_admitted("urn:old") and book.is_admitted("urn:new")


def test_a_draining_pool_admits_no_task(book: TaskBook) -> None:
    book.add(TaskEntry("urn:a", book.new_name(), 0.5))
    book.close_admission()
    RunnerLink(book, Directory()).tell(WeightKnown("urn:a", 0.5))
    assert not book.is_admitted("urn:a")
    assert book.admit_waiting() == ([], None, 0.0)


def test_a_task_is_added_only_within_the_room_and_while_the_pool_admits(book: TaskBook) -> None:
    room = Room.of(2, prefetch=1)  # two slots and one prefetched
    added = [book.add_within(TaskEntry(f"urn:{n}", book.new_name(), 0.5), room) for n in range(4)]
    assert added == [Added.ADDED_UNWATCHED, Added.ADDED, Added.ADDED, Added.NO_ROOM]
    assert book.add_within(TaskEntry("urn:0", book.new_name(), 0.5), room) is Added.KNOWN
    assert book.pop("urn:2") is not None and book.poller_room(room) == 1
    book.close_admission()  # the pool drains: nothing more, room or not
    assert book.add_within(TaskEntry("urn:5", book.new_name(), 0.5), room) is Added.NO_ROOM
    assert len(book) == 2


def test_the_runner_is_told_of_a_start_only_while_it_polls_no_signals(book: TaskBook) -> None:
    room = Room.of(4, prefetch=0)
    assert not book.watch_signals()  # empty: the runner schedules no KILL poll
    assert book.add_within(TaskEntry("urn:a", book.new_name(), 0.25), room) is Added.ADDED_UNWATCHED
    assert book.add_within(TaskEntry("urn:b", book.new_name(), 0.25), room) is Added.ADDED
    book.pop("urn:a")
    book.pop("urn:b")
    assert not book.watch_signals()  # the runner's poll found the book empty: it stops
    assert book.add_within(TaskEntry("urn:c", book.new_name(), 0.25), room) is Added.ADDED_UNWATCHED


def test_a_parked_poller_is_unparked_once(book: TaskBook) -> None:
    room = Room.of(1, prefetch=0)
    assert book.poller_room(room) == 1 and not book.unpark_poller()  # room: not parked
    book.add_within(TaskEntry("urn:a", book.new_name(), 1.0), room)
    assert book.poller_room(room, park=False) == 0 and not book.unpark_poller()
    assert book.poller_room(room) == 0
    assert not book.unpark_poller()  # still full: waking it would find no room
    book.pop("urn:a")
    assert book.unpark_poller() and not book.unpark_poller()


def test_a_parked_poller_stays_parked_while_the_room_it_found_full_is_full(book: TaskBook) -> None:
    """One running, one prefetched: the poller parks. The prefetched Task weighs itself at the
    weight it was counted at and the runner looks at the room: as full as the poller found it,
    so nobody wakes it (two turns of its thread for nothing); the running one's end does."""
    room = Room.of(1, prefetch=1)
    for urn in ("urn:a", "urn:b"):
        assert book.add_within(TaskEntry(urn, book.new_name(), 1.0), room) is not Added.NO_ROOM
    assert book.poller_room(room) == 0
    book.record(WeightKnown("urn:b", 1.0))
    assert not book.unpark_poller()
    book.pop("urn:a")
    assert book.unpark_poller() and book.poller_room(room) == 1


def test_once_takes_one_task_then_none(book: TaskBook) -> None:
    room = Room.of(4, prefetch=2, once=True)
    assert book.poller_room(room) == 1
    assert book.add_within(TaskEntry("urn:a", book.new_name(), 0.25), room) is Added.ADDED_UNWATCHED
    assert book.add_within(TaskEntry("urn:b", book.new_name(), 0.25), room) is Added.NO_ROOM
    book.record(TaskSettled("urn:a", "SUCCESS"))
    book.pop("urn:a")
    assert book.poller_room(room) == 0  # it produced a result: the executor is done
