"""The poller starts each received request's Task itself, within the room of the pool's task book.

A real QueuePoller actor; a purpose-written stand-in queue hands it messages on its receives
(and records what it gives back), so the test chooses what the book holds when a message
arrives. The runner is an ``Inbox``: no runner is needed for a Task to start, it only hears
``TaskStarted`` when its KILL poll must begin. The Tasks started here are real (their GMS is
unreachable, so they wait in their input read) and are stopped with the book.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.pool import task_start
from executor.pool.context import PoolContext
from executor.pool.messages import LEASER, RUNNER, Poll, RunRequest, TaskStarted
from executor.pool.poller import QueuePoller
from executor.pool.taskbook import TaskEntry
from executor.queue.sqs import ReceivedMessage
from executor.supervision import ChildContext, Directory
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Health, Inbox, ScriptedQueue

URN = "urn:li:dataHubExecutionRequest:"


class FeedingQueue(ScriptedQueue):
    """A queue whose receives hand out the messages put in ``waiting`` (running ``before`` first,
    once), and otherwise wait a moment and come back empty, as a short long poll does."""

    def __init__(self, before: Callable[[], None] | None = None) -> None:
        super().__init__({})
        self.waiting: list[ReceivedMessage] = []
        self.before = before
        self.asked: list[int] = []
        self._quiet = threading.Event()

    def receive(self, max_messages: int, wait_s: int, visibility_s: int) -> list[ReceivedMessage]:
        with self.lock:
            self.asked.append(max_messages)
            given, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
            before, self.before = (self.before, None) if given else (None, self.before)
        if before is not None:
            before()
        if not given:
            self._quiet.wait(0.05)
        return given

    def delete(self, receipt_handle: str) -> None:
        """Nothing is deleted here."""


def _message(run_id: str) -> ReceivedMessage:
    return ReceivedMessage(f"m-{run_id}", f"h-{run_id}", json.dumps({"urn": URN + run_id}), 1, None)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[pykka.ActorRef[Any], PoolContext, Any]]:
    """A poller of a one-worker pool (no prefetch) with its runner an ``Inbox``."""
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9", "timeout_s": 1}, "state_dir": str(tmp_path),
        "pools": [{"id": "default", "max_workers": 1, "prefetch": 0, "visibility_s": 120, "poll_wait_s": 1}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=Health())
    directory = Directory()
    siblings = {LEASER: Inbox.start(), RUNNER: Inbox.start()}
    for name, sibling in siblings.items():
        directory.put(name, sibling)
    ref = QueuePoller.start(ChildContext("poller", "root/pool:default/poller", 1, None, directory), pool)
    try:
        yield ref, pool, siblings[RUNNER].proxy()
    finally:
        ref.stop(block=True, timeout=30)
        pool.tasks.stop_all(30)
        for sibling in siblings.values():
            sibling.stop(block=True, timeout=10)


def test_the_poller_starts_the_task_itself_within_the_room(world: Any) -> None:
    ref, pool, runner = world
    queue = FeedingQueue()
    queue.waiting = [_message("a"), _message("b")]
    ref.proxy().queue = queue
    ref.tell(Poll())  # as a lease's arrival does
    entry = wait_until(lambda: pool.tasks.get(URN + "a"), 10, "the poller to start a's Task")
    wait_until(lambda: entry.ref is not None, 10, "a's Task to be started")
    # ``TaskStarted`` is told after the ref is set, and the poller parks once its receive filled
    # the pool (no ``Poll`` turn to find it full).
    started = wait_until(
        lambda: [m.urn for m in runner.received.get(timeout=5) if isinstance(m, TaskStarted)],
        10, "the runner to hear TaskStarted",
    )
    assert started == [URN + "a"]
    # One slot, taken: the poller asked for one message and, parked, asks for no more.
    wait_until(lambda: pool.tasks.poller_parked, 10, "the poller to park for lack of room")
    assert queue.asked[0] == 1
    assert len(pool.tasks) == 1 and [m.message_id for m in queue.waiting] == ["m-b"]
    assert pool.in_flight.get(URN + "a") is not None


def test_a_message_without_room_is_given_back_and_starts_nothing(world: Any) -> None:
    ref, pool, runner = world

    def room_taken() -> None:  # a Task weighed heavier while the receive waited
        pool.tasks.add(TaskEntry(URN + "heavy", pool.tasks.new_name(), 1.0))

    queue = FeedingQueue(room_taken)
    queue.waiting = [_message("a")]
    ref.proxy().queue = queue
    ref.tell(Poll())
    wait_until(lambda: "h-a" in queue.extended, 10, "the message to be given back")
    assert pool.tasks.get(URN + "a") is None and pool.in_flight.get(URN + "a") is None
    assert not [m for m in runner.received.get(timeout=5) if isinstance(m, TaskStarted)]


def test_a_start_that_raises_gives_its_message_back_and_the_batch_goes_on(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, pool, _runner = world
    real = task_start.Task

    class FailsForA:
        @staticmethod
        def start(task_ctx: ChildContext, pool: PoolContext, request: RunRequest) -> Any:
            if request.urn == URN + "a":
                raise RuntimeError("no thread to start on")
            return real.start(task_ctx, pool, request)

    monkeypatch.setattr(task_start, "Task", FailsForA)
    queue = FeedingQueue()
    queue.waiting = [_message("a"), _message("b")]
    ref.proxy().queue = queue
    ref.tell(Poll())
    wait_until(lambda: "h-a" in queue.extended, 10, "a's message to be given back")
    entry = wait_until(lambda: pool.tasks.get(URN + "b"), 10, "the poller to start b's Task")
    wait_until(lambda: entry.ref is not None, 10, "b's Task to be started")
    assert pool.tasks.get(URN + "a") is None and pool.in_flight.get(URN + "a") is None
    assert ref.is_alive()
