"""Visibility extensions under throttles and refused credentials (issue 11.8), the readiness
of a poller that has free capacity but does not receive (issue 11.1), and the queue's depth.

A real QueuePoller actor holds three messages; a purpose-written stand-in queue answers its
``ChangeMessageVisibility`` calls as scripted (SQS itself cannot be made to throttle or
answer 403 on demand here). A throttle on one message must not skip the others, and that one
is extended again shortly; a 403 is a credential problem: the message stays held and the
leaser is asked for a new lease.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from executor.config import ExecutorConfig
from executor.errors import NotAllowedError, ThrottledError
from executor.pool.context import PoolContext
from executor.pool.inflight import InFlight
from executor.pool.messages import LEASER, LeaseRejected, Poll
from executor.pool.poll_duties import Housekeeping
from executor.pool.poller import QueuePoller
from executor.supervision import ChildContext, Directory
from tests.faults.ledger import wait_until


class ScriptedQueue:
    """Stands in for ``SqsQueue``: records extensions, raises what ``failures`` says once each;
    its receives wait a moment and come back empty, as a short long poll does."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = dict(failures)
        self.extended: list[str] = []
        self.lock = threading.Lock()
        self.receives = 0
        self._quiet = threading.Event()

    def receive(self, max_messages: int, wait_s: int, visibility_s: int) -> list[Any]:
        with self.lock:
            self.receives += 1
        self._quiet.wait(0.05)
        return []

    def extend(self, receipt_handle: str, visibility_s: int) -> None:
        with self.lock:
            failure = self.failures.pop(receipt_handle, None)
            if failure is not None:
                raise failure
            self.extended.append(receipt_handle)

    def close(self) -> None:
        """Nothing to close."""

    def interrupt(self) -> None:
        self._quiet.set()


class Health:
    """Stands in for ``HealthState``: keeps the readiness verdicts, the last in ``ready``."""

    def __init__(self) -> None:
        self.ready: tuple[bool, str] | None = None
        self.verdicts: list[tuple[bool, str]] = []

    def watch(self, component: str, probe: Any) -> None:
        """Liveness is not under test here (a pool actor registers its probe at its start)."""

    def forget(self, component: str) -> None:
        """Nothing is watched here (an ended actor lets go)."""

    def set_ready(self, pool_id: str, ready: bool, reason: str) -> None:
        self.ready = (ready, reason)
        self.verdicts.append(self.ready)


class Inbox(pykka.ThreadingActor):
    """Stands in for a sibling (the leaser): keeps what it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)
        return None


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def poller(tmp_path: Path, health: Health) -> Iterator[tuple[pykka.ActorRef[Any], Any]]:
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
        "pools": [{"id": "default", "visibility_s": 120, "poll_wait_s": 1}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=health)
    for n in range(3):
        pool.in_flight.put(InFlight(f"urn:li:dataHubExecutionRequest:r{n}", f"m{n}", f"h{n}"))
    directory = Directory()
    leaser = Inbox.start()
    directory.put(LEASER, leaser)
    ctx = ChildContext("poller", "root/pool:default/poller", 1, None, directory)
    ref = QueuePoller.start(ctx, pool)
    try:
        yield ref, leaser
    finally:
        ref.stop(block=True, timeout=10)
        leaser.stop(block=True, timeout=10)


def _extensions_due(ref: pykka.ActorRef[Any]) -> None:
    """Make the held messages' extension due now (their clock says a third of a lease ago)."""
    ref.proxy().duties.get(timeout=5).extend_at = time.monotonic()
    ref.tell(Housekeeping())


def test_a_throttle_retries_that_message_and_extends_the_others(poller: Any) -> None:
    ref, _ = poller
    queue = ScriptedQueue({"h0": ThrottledError("slow down")})
    ref.proxy().queue = queue
    _extensions_due(ref)
    wait_until(lambda: {"h1", "h2"} <= set(queue.extended), 10, "the other messages to be extended")
    wait_until(lambda: "h0" in queue.extended, 10, "the throttled message to be extended again")


def test_a_403_keeps_the_message_and_asks_for_a_new_lease(poller: Any) -> None:
    ref, leaser = poller
    queue = ScriptedQueue({"h0": NotAllowedError("AccessDenied (403)")})
    ref.proxy().queue = queue
    _extensions_due(ref)
    def rejected() -> list[Any]:
        return [m for m in leaser.proxy().received.get(timeout=5) if isinstance(m, LeaseRejected)]

    assert "403" in wait_until(rejected, 10, "the leaser to be asked for a new lease")[0].error
    in_flight = ref.proxy().in_flight.get(timeout=5)
    assert len(in_flight) == 3  # still ours: nothing dropped


def test_free_capacity_without_receiving_is_not_ready(poller: Any, health: Health) -> None:
    ref, _ = poller
    proxy = ref.proxy()
    proxy.queue = ScriptedQueue({})
    assert not len(proxy.pool.get(timeout=5).tasks)  # the task book is empty: slots are free ...
    proxy.last_receive = time.monotonic() - 1000  # ... but nothing was received for 1000 s
    ref.tell(Housekeeping())  # the safety net's look (it then restarts the loop: ready again)
    verdict = wait_until(lambda: [v for v in health.verdicts if not v[0]], 10,
                         "the pool to be reported not ready")
    assert "free but no receive" in verdict[0][1]


class DepthQueue(ScriptedQueue):
    """A stand-in queue that counts the depth calls it answers."""

    def __init__(self) -> None:
        super().__init__({})
        self.depth_calls = 0

    def approximate_depth(self) -> int:
        self.depth_calls += 1
        return 7


class Gauges:
    """Stands in for ``Metrics``: keeps the last queue depth published."""

    def __init__(self) -> None:
        self.depth: int | None = None

    def set_queue_depth(self, pool_id: str, depth: int) -> None:
        self.depth = depth


def test_an_empty_receive_stands_in_for_the_depth_call_and_a_parked_loop_reads_it(
    poller: Any,
) -> None:
    """At rest the poller's receives come back empty: the depth is then 0 without asking SQS
    (a call per pool every 15 s); a loop that does not receive (here: no room) asks SQS once
    the depth is due, as an autoscaler needs it most when every slot is busy."""
    ref, _ = poller
    proxy = ref.proxy()
    queue, gauges = DepthQueue(), Gauges()
    pool = dataclasses.replace(proxy.pool.get(timeout=5), metrics=gauges)
    proxy.pool = pool
    proxy.queue = queue
    ref.tell(Poll())
    wait_until(lambda: queue.receives >= 3, 10, "a few empty receives")
    assert (queue.depth_calls, gauges.depth) == (0, 0)
    pool.tasks.close_admission()  # the loop stops receiving (a drain)
    wait_until(lambda: proxy.receiving.get(timeout=5) is False, 10, "the loop to stop receiving")
    proxy.duties.get(timeout=5).depth_at = time.monotonic()
    ref.tell(Housekeeping())
    wait_until(lambda: gauges.depth == 7, 10, "the depth to be read from SQS")
    assert queue.depth_calls == 1
