"""``start_task``: the poller's start of a Task, between its entry's ``add_within`` and its ref.

``Task.start`` is replaced by a stand-in that plays what may happen on other threads in that
gap (the new Task weighing itself, the runner's turn, a drain) and returns an ``Inbox``'s ref,
so each race happens every time. The runner is an ``Inbox`` too.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.pool import task_start
from executor.pool.context import PoolContext
from executor.pool.messages import RUNNER, Admitted, RunRequest, TaskStarted, WeightKnown
from executor.pool.taskbook import Added, TaskEntry
from executor.supervision import ChildContext, Directory
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Health, Inbox

URN = "urn:li:dataHubExecutionRequest:a"


class World:
    """A pool of one worker and one prefetch slot, its runner an ``Inbox``, the poller's context."""

    def __init__(self, tmp_path: Path) -> None:
        config = ExecutorConfig.model_validate({
            "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
            "pools": [{"id": "default", "max_workers": 1, "prefetch": 1}],
        })
        self.pool = PoolContext(config=config, pool=config.pools[0], token="test-token",
                                instance_id="test", health=Health())
        self.runner = Inbox.start()
        self.task = Inbox.start()
        directory = Directory()
        directory.put(RUNNER, self.runner)
        self.ctx = ChildContext("poller", "root/pool:default/poller", 1, None, directory)
        self.room = task_start.pool_room(self.pool)

    def received(self, ref: pykka.ActorRef[Any], kind: type) -> list[Any]:
        return [m for m in ref.proxy().received.get(timeout=10) if isinstance(m, kind)]

    def start(self, gap: Callable[[ChildContext], None], ref: pykka.ActorRef[Any] | None = None) -> Added:
        """``start_task`` for ``URN``, running ``gap`` where the Task starts (before its ref)."""

        class StandIn:
            @staticmethod
            def start(task_ctx: ChildContext, pool: PoolContext, request: RunRequest) -> Any:
                gap(task_ctx)
                return ref or self.task

        self.pool_task: Any = StandIn
        return task_start.start_task(self.pool, self.ctx, RunRequest(URN, "m-a"), self.room)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    made = World(tmp_path)
    monkeypatch.setattr(task_start, "Task", _Deferred(made))
    try:
        yield made
    finally:
        made.runner.stop(block=True, timeout=10)
        if made.task.is_alive():
            made.task.stop(block=True, timeout=10)


class _Deferred:
    """``task_start.Task`` in these tests: the stand-in the test's ``World.start`` set."""

    def __init__(self, world: World) -> None:
        self.world = world

    def start(self, task_ctx: ChildContext, pool: PoolContext, request: RunRequest) -> Any:
        return self.world.pool_task.start(task_ctx, pool, request)


def test_a_task_that_weighed_itself_before_its_ref_was_set_is_admitted(world: World) -> None:
    book = world.pool.tasks
    holder = TaskEntry("urn:li:holder", book.new_name(), 1.0, ref=world.runner, weighed=True, admitted=True)
    book.add(holder)

    def weighed_then_room_freed(task_ctx: ChildContext) -> None:
        assert task_ctx.parent is not None
        task_ctx.parent.tell(WeightKnown(URN, 1.0))  # no room: it waits
        assert not book.is_admitted(URN)
        book.pop(holder.urn)  # the runner's turn: the holder's exit, then its ``_admit``
        assert book.admit_waiting() == ([], None, 0.0)  # stops at the entry without a ref

    assert world.start(weighed_then_room_freed) is Added.ADDED_UNWATCHED
    assert book.is_admitted(URN)
    wait_until(lambda: world.received(world.task, Admitted), 10, "the Task to be told Admitted")


def test_a_start_that_fails_leaves_the_kill_poll_to_be_scheduled(world: World) -> None:
    def fails(task_ctx: ChildContext) -> None:
        raise RuntimeError("no thread to start on")

    with pytest.raises(RuntimeError):
        world.start(fails)
    assert URN not in world.pool.tasks
    # The runner re-reads whether it must poll (the book marked it scheduled at the add).
    started = wait_until(lambda: world.received(world.runner, TaskStarted), 10, "TaskStarted")
    assert [m.urn for m in started] == [URN]


def test_a_drain_between_the_add_and_the_ref_gives_the_request_back(world: World) -> None:
    def drain(task_ctx: ChildContext) -> None:
        world.pool.tasks.close_admission()

    assert world.start(drain) is Added.ADDED_UNWATCHED
    told = wait_until(lambda: world.received(world.task, task_start.Cancel), 10, "the drain's Cancel")
    assert told == [task_start.DRAIN_CANCEL] and not world.received(world.task, Admitted)


def test_a_drain_finding_its_task_ended_already_does_not_raise(world: World) -> None:
    world.task.stop(block=True, timeout=10)

    def drain(task_ctx: ChildContext) -> None:
        world.pool.tasks.close_admission()

    assert world.start(drain, world.task) is Added.ADDED_UNWATCHED


class Gauge:
    """The busy-slots gauge; its first set lets ``meanwhile`` run on another thread first (a
    Task ends and the runner publishes) and waits a bounded while for it."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        self.values: list[float] = []
        self.meanwhile: Callable[[], None] | None = meanwhile
        self.other: threading.Thread | None = None

    def set_busy_slots(self, pool_id: str, value: float) -> None:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            self.other = threading.Thread(target=meanwhile)
            self.other.start()
            self.other.join(0.5)  # done at once without the lock; with it, it waits for this set
        self.values.append(value)


def test_an_older_busy_reading_never_overwrites_a_newer_one(world: World) -> None:
    book = world.pool.tasks
    book.add(TaskEntry(URN, book.new_name(), 1.0))

    def task_ended() -> None:
        book.pop(URN)
        task_start.publish_busy(pool, world.room)

    gauge = Gauge(task_ended)
    pool = dataclasses.replace(world.pool, metrics=gauge)
    assert pool.tasks is book
    task_start.publish_busy(pool, world.room)
    assert gauge.other is not None
    gauge.other.join(10)
    assert gauge.values[-1] == 0.0, gauge.values
