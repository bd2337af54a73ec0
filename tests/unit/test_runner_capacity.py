"""The runner wakes the poller (``Capacity``) only when the poller is parked in the task book for
lack of room, and keeps one heap-trim timer at a time however many tasks come and go.

A real TaskRunner actor with a real pool context; its siblings are recording actors listed in
its directory (the poller, the reporter), and the Tasks it looks after are book entries without
an actor (what the runner reads of them: their weight, their exit notice).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.pool import runner as runner_module
from executor.pool.context import PoolContext
from executor.pool.messages import (
    POLLER,
    REPORTER,
    Capacity,
    Finish,
    LiveTasks,
    TaskStarted,
    TasksWanted,
    TrimSoon,
    WeightKnown,
)
from executor.pool.runner import TaskRunner
from executor.pool.runner_link import RunnerLink
from executor.pool.task_start import pool_room
from executor.pool.taskbook import TaskEntry
from executor.supervision import ChildContext, ChildExited, Directory
from executor.supervision.spec import Lifeline
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Inbox
from tests.unit.test_poller_stop import Beats


class CountingRunner(TaskRunner):
    """The runner, counting the heap-trim timers it sets (on its own thread)."""

    trim_timers: list[float] = []

    def tell_self_after(self, delay_s: float, message: Any) -> int:
        if isinstance(message, runner_module._TrimHeap):
            self.trim_timers.append(delay_s)
        return super().tell_self_after(delay_s, message)


World = tuple[Callable[[], pykka.ActorRef[Any]], PoolContext, Inbox]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A pool of two workers, its poller an ``Inbox``, and a way to start its runner."""
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
        "pools": [{"id": "default", "max_workers": 2, "prefetch": 0}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=Beats())
    directory = Directory()
    siblings = {POLLER: Inbox.start(), REPORTER: Inbox.start()}
    for name, sibling in siblings.items():
        directory.put(name, sibling)
    CountingRunner.trim_timers = []
    runners: list[pykka.ActorRef[Any]] = []

    def start() -> pykka.ActorRef[Any]:
        ctx = ChildContext("runner", "root/pool:default/runner", len(runners) + 1, None, directory)
        runners.append(CountingRunner.start(ctx, pool))
        return runners[-1]

    start.directory = directory  # type: ignore[attr-defined]  # for a Task's RunnerLink
    start.reporter = siblings[REPORTER].proxy()  # type: ignore[attr-defined]
    try:
        yield start, pool, siblings[POLLER].proxy()
    finally:
        for ref in runners:
            ref.stop(block=True, timeout=30)
        for sibling in siblings.values():
            sibling.stop(block=True, timeout=10)


def _capacities(poller: Any) -> list[Capacity]:
    return [m for m in poller.received.get(timeout=10) if isinstance(m, Capacity)]


_ROUNDS = itertools.count(1_000)  # above the rounds the tests tell themselves


def _handled(ref: pykka.ActorRef[Any], poller: Any, message: Any) -> None:
    """Tell ``message`` and return once the runner has handled it: a ``TasksWanted`` told after
    it is answered to the poller once it has (one strand, in order). Each call asks its own
    round: an ``id()`` of a message gone is reused, and an old answer then passed for this one."""
    ref.tell(message)
    asked = next(_ROUNDS)
    ref.tell(TasksWanted(asked))
    wait_until(lambda: any(isinstance(m, LiveTasks) and m.round == asked
                           for m in poller.received.get(timeout=10)), 30, "the runner to answer")


def _fill(pool: PoolContext) -> list[str]:
    """Two tasks of the default weight: the pool of two is full. Their names."""
    names = []
    for n in range(2):
        names.append(pool.tasks.new_name())
        pool.tasks.add(TaskEntry(f"urn:li:task:{n}", names[-1], 0.5))
    return names


def test_only_a_parked_poller_is_woken_when_a_task_ends(world: World) -> None:
    start, pool, poller = world
    ref = start()
    first, second = _fill(pool)
    assert pool.tasks.poller_room(pool_room(pool)) == 0  # the poller parks: no room
    _handled(ref, poller, ChildExited(first, 1, False))
    assert len(_capacities(poller)) == 1, "the parked poller is woken"
    _handled(ref, poller, ChildExited(second, 1, False))
    assert len(_capacities(poller)) == 1, "a poller that is not parked is not woken"


def test_a_lighter_weight_wakes_a_parked_poller(world: World) -> None:
    start, pool, poller = world
    ref = start()
    _fill(pool)
    assert pool.tasks.poller_room(pool_room(pool)) == 0
    for urn in ("urn:li:task:0", "urn:li:task:1"):
        pool.tasks.record(WeightKnown(urn, 0.25))  # as the Task's ``RunnerLink`` does first
        _handled(ref, poller, WeightKnown(urn, 0.25))
    assert pool.tasks.poller_room(pool_room(pool), park=False) == 1
    assert len(_capacities(poller)) == 1, "woken once: not parked again since"


def test_a_new_runner_wakes_a_poller_parked_while_none_was_up(world: World) -> None:
    start, pool, poller = world
    names = _fill(pool)
    pool.tasks.record(ChildExited(names[0], 1, False))  # told while no runner was up
    assert pool.tasks.poller_room(pool_room(pool)) == 0
    ref = start()  # adopts both, pops the ended one, wakes the poller
    _handled(ref, poller, TasksWanted(0))
    assert len(_capacities(poller)) == 1 and len(pool.tasks) == 1


def test_tasks_back_to_back_keep_one_trim_timer(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[bool] = []
    monkeypatch.setattr(runner_module, "trim_heap", lambda: trims.append(True))
    start, pool, poller = world
    ref = start()
    for n in range(5):  # each leaves the pool empty, each within TRIM_AFTER_S of the last
        name = pool.tasks.new_name()
        pool.tasks.add(TaskEntry(f"urn:li:task:{n}", name, 0.5))
        _handled(ref, poller, ChildExited(name, 1, False))
    assert len(pool.tasks) == 0 and CountingRunner.trim_timers == [runner_module.TRIM_AFTER_S]
    wait_until(lambda: trims == [True], 30, "the heap to be trimmed once the pool has rested")
    # A timer set before the last task's end looked again rather than trimming early, so at
    # most one more was set; none is left once it trimmed.
    assert len(CountingRunner.trim_timers) <= 2 and trims == [True]


def test_a_new_runner_wakes_a_poller_parked_for_a_weight_it_never_heard(world: World) -> None:
    start, pool, poller = world
    _fill(pool)
    assert pool.tasks.poller_room(pool_room(pool)) == 0
    for n in range(2):  # their tells lost: no runner was up; together they free a slot
        pool.tasks.record(WeightKnown(f"urn:li:task:{n}", 0.25))
    ref = start()  # no exited entry to pop: only its start's own look wakes the poller
    _handled(ref, poller, TasksWanted(0))
    assert len(_capacities(poller)) == 1 and len(pool.tasks) == 2


def test_a_look_armed_just_before_a_new_runners_start_is_scheduled_once(world: World) -> None:
    """A Task arms the look (``arm_trim``) just before a new runner's ``setup`` reads
    ``trim_armed``: the setup schedules it, and the Task's ``TrimSoon`` that then arrives does
    not schedule a second one."""
    start, pool, poller = world
    assert pool.tasks.arm_trim()  # as the Task's end does, with no runner up yet
    ref = start()
    _handled(ref, poller, TrimSoon())
    assert CountingRunner.trim_timers == [runner_module.TRIM_AFTER_S]


@pytest.mark.parametrize("first", ["the Task's link", "the runner's adoption"])
def test_an_orderly_end_handled_by_a_task_and_a_new_runner_at_once_counts_once(
        world: World, monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """A Task's ``RunnerLink`` handles its orderly end while a new runner adopts the same entry
    (its exit already in the book): whichever pops the entry first, the other finds it gone
    between its look and its pop. One pop, one ``Capacity`` for the parked poller, no FAILURE."""
    start, pool, poller = world
    ended, _ = _fill(pool)
    assert pool.tasks.poller_room(pool_room(pool)) == 0  # the poller parks: no room
    link = RunnerLink(pool.tasks, start.directory)  # type: ignore[attr-defined]
    notice = ChildExited(ended, 0, False)
    pool.tasks.record(notice)  # the link's first step: the exit is in the book for an adoption
    looked, popped, refs = pool.tasks.named, pool.tasks.pop, []
    pops: list[str] = []
    linked: list[bool] = []

    def pop(urn: str) -> TaskEntry | None:
        entry = popped(urn)
        if entry is not None:
            pops.append(threading.current_thread().name)
        return entry

    def named(name: str) -> TaskEntry | None:
        entry = looked(name)  # seen: now the other side pops it before this side does
        on_link = threading.current_thread() is threading.main_thread()
        if entry is not None and on_link and first == "the runner's adoption" and not refs:
            refs.append(start())
            _handled(refs[0], poller, TasksWanted(1))  # adopted: the runner popped it
        elif entry is not None and not on_link and first == "the Task's link" and not linked:
            linked.append(True)  # the link's own look comes back here: it must not recurse
            link._ended(notice)
        return entry

    monkeypatch.setattr(pool.tasks, "named", named)
    monkeypatch.setattr(pool.tasks, "pop", pop)
    if first == "the Task's link":
        refs.append(start())
        _handled(refs[0], poller, TasksWanted(1))
    else:
        link.tell(notice)
    _handled(refs[0], poller, TasksWanted(2))
    assert len(pops) == 1 and len(pool.tasks) == 1
    assert len(_capacities(poller)) == 1
    reporter = start.reporter  # type: ignore[attr-defined]
    assert not [m for m in reporter.received.get(timeout=10) if isinstance(m, Finish)]


def _runner(ref: pykka.ActorRef[Any]) -> TaskRunner:
    actor = ref._actor_weakref()
    assert isinstance(actor, TaskRunner)
    return actor


def test_the_safety_nets_run_on_the_kill_poll_only_while_the_book_holds_a_task(world: World) -> None:
    """At rest the runner keeps no timer (no beat); a Task's start arms the KILL poll, whose
    turns also sweep for a Task that ended without a notice; once that leaves the book empty
    the poll stops. A runner started on a book that holds a task arms it by itself."""
    start, pool, poller = world
    ref = start()
    _handled(ref, poller, TasksWanted(0))
    assert not _runner(ref).timers._entries, "a runner at rest keeps no timer"
    task, ended = Inbox.start(), threading.Event()
    lifeline = Lifeline()
    lifeline.attach(ended)
    name = pool.tasks.new_name()
    pool.tasks.add(TaskEntry("urn:li:task:silent", name, 0.5, ref=task, lifeline=lifeline))
    _handled(ref, poller, TaskStarted("urn:li:task:silent"))  # as the poller tells it
    assert _runner(ref).timers._entries, "the KILL poll is armed"
    task.stop(timeout=10)  # the Task ends without a word to anyone
    ended.set()
    reporter = start.reporter  # type: ignore[attr-defined]
    finish = wait_until(lambda: [m for m in reporter.received.get(timeout=10) if isinstance(m, Finish)],
                        30, "the KILL poll's sweep to report the silent end")
    assert finish[0].urn == "urn:li:task:silent" and finish[0].status == "FAILURE"
    assert len(pool.tasks) == 0
    wait_until(lambda: not _runner(ref).timers._entries or None, 30, "the poll to stop on an empty book")
    assert ref.stop(timeout=30)
    pool.tasks.add(TaskEntry("urn:li:task:kept", pool.tasks.new_name(), 0.5))  # told while none was up
    again = start()
    _handled(again, poller, TasksWanted(1))
    assert _runner(again)._polling_signals and _runner(again).timers._entries
