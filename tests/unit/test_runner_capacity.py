"""The runner tells the poller a ``Capacity`` only when it changed or was asked for, and keeps
one heap-trim timer at a time however many tasks come and go.

A real TaskRunner actor with a real pool context; its siblings are recording actors listed in
its directory (the poller, the reporter), and the Tasks it looks after are book entries without
an actor (what the runner reads of them: their weight, their exit notice).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.pool import runner as runner_module
from executor.pool.context import PoolContext
from executor.pool.messages import POLLER, REPORTER, Capacity, CapacityWanted, WeightKnown
from executor.pool.runner import TaskRunner
from executor.pool.taskbook import TaskEntry
from executor.supervision import ChildContext, ChildExited, Directory
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


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[pykka.ActorRef[Any], PoolContext, Inbox]]:
    """A started runner of a pool of two workers, its poller an ``Inbox``."""
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
    ref = CountingRunner.start(ChildContext("runner", "root/pool:default/runner", 1, None, directory), pool)
    try:
        yield ref, pool, siblings[POLLER].proxy()
    finally:
        ref.stop(block=True, timeout=30)
        for sibling in siblings.values():
            sibling.stop(block=True, timeout=10)


def _capacities(poller: Any) -> list[Capacity]:
    return [m for m in poller.received.get(timeout=10) if isinstance(m, Capacity)]


def _told_after(ref: pykka.ActorRef[Any], poller: Any, message: Any, epoch: str) -> list[Capacity]:
    """The Capacities ``message`` made the runner tell: a ``CapacityWanted`` told after it is
    answered once it has been handled (one strand, in order), so its answer closes the count."""
    before = len(_capacities(poller))
    ref.tell(message)
    ref.tell(CapacityWanted(epoch))
    wait_until(lambda: len(_capacities(poller)) > before, 30, "the runner to answer the ask")
    told = _capacities(poller)[before:]
    return told[:-1]


def test_an_ask_is_answered_even_when_nothing_changed(world: Any) -> None:
    ref, _, poller = world
    wait_until(lambda: len(_capacities(poller)) == 1, 30, "the runner's first Capacity")
    for n in (2, 3):
        ref.tell(CapacityWanted("poller-1"))  # the same figures each time: answered all the same
        wait_until(lambda n=n: len(_capacities(poller)) == n, 30, f"answer {n - 1} to the ask")
    first, second, third = _capacities(poller)
    assert second == third and second.free_slots == first.free_slots == 2


def test_a_weight_that_changes_nothing_sends_no_capacity(world: Any) -> None:
    ref, pool, poller = world
    wait_until(lambda: len(_capacities(poller)) == 1, 30, "the runner's first Capacity")
    pool.tasks.add(TaskEntry("urn:li:task:a", pool.tasks.new_name(), 0.5))  # as ``_run`` does
    synced = _told_after(ref, poller, CapacityWanted("poller-1"), "poller-1")
    assert [c.free_slots for c in synced] == [1]  # what the runner told last now counts the task
    assert _told_after(ref, poller, WeightKnown("urn:li:task:a", 0.5), "poller-1") == []
    told = _told_after(ref, poller, WeightKnown("urn:li:task:a", 1.0), "poller-1")
    assert [c.free_slots for c in told] == [0], "a heavier weight takes a slot: that is told"


def test_tasks_back_to_back_keep_one_trim_timer(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[bool] = []
    monkeypatch.setattr(runner_module, "trim_heap", lambda: trims.append(True))
    ref, pool, poller = world
    for n in range(5):  # each leaves the pool empty, each within TRIM_AFTER_S of the last
        name = pool.tasks.new_name()
        pool.tasks.add(TaskEntry(f"urn:li:task:{n}", name, 0.5))
        _told_after(ref, poller, ChildExited(name, 1, False), "poller-1")
    assert len(pool.tasks) == 0 and CountingRunner.trim_timers == [runner_module.TRIM_AFTER_S]
    wait_until(lambda: trims == [True], 30, "the heap to be trimmed once the pool has rested")
    # A timer set before the last task's end looked again rather than trimming early, so at
    # most one more was set; none is left once it trimmed.
    assert len(CountingRunner.trim_timers) <= 2 and trims == [True]
