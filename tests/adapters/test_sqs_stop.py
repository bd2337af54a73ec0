"""A stop is not held by an SQS that does not answer: ``SqsQueue.interrupt`` cuts the short call
in progress (an extension, a delete, the depth), not only the long poll, and a stopping queue's
short calls make no retry.

Against a silent SQS each short call waits ``SHORT_CALL_TIMEOUT_S`` and is retried once, which
is about as long as the pool supervisor waits for a poller's stop (11 s). The SQS here is a real
server on loopback that reads each request and never answers (``HostilePeer``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from executor.errors import TransportError
from executor.queue import sqs
from executor.queue.sqs import SqsQueue
from tests.adapters.conftest import make_lease
from tests.faults.ledger import wait_until
from tests.security.gms_peer import HostilePeer


@dataclass
class SilentSqs:
    """A queue whose SQS reads every request and never answers, and when each request came."""

    queue: SqsQueue
    asked: list[float]


@pytest.fixture
def silent(peers: list[HostilePeer]) -> Iterator[SilentSqs]:
    asked: list[float] = []

    def behaviour(peer: HostilePeer, conn: socket.socket) -> None:
        asked.append(time.monotonic())
        peer.stopping.wait()

    peer = HostilePeer(behaviour).start()
    peers.append(peer)
    queue = SqsQueue(make_lease(f"{peer.url}/000000000000/silent"), connect_timeout_s=2.0)
    yield SilentSqs(queue, asked)
    queue.close()


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the test reads what ended it
            outcome.append(exc)

    thread = threading.Thread(target=run, name="short-call", daemon=True)
    thread.start()
    return thread, outcome


def test_a_stop_cuts_the_short_call_in_progress_and_no_call_after_it_retries(
    silent: SilentSqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, outcome = _in_thread(silent.queue.approximate_depth)  # SHORT_CALL_TIMEOUT_S: 5 s, twice
    wait_until(lambda: len(silent.asked) == 1, 10, "the depth query to reach SQS")
    silent.queue.interrupt()
    thread.join(4)  # well within one attempt's deadline
    assert not thread.is_alive(), "the stop cut the call in progress"
    assert len(outcome) == 1 and isinstance(outcome[0], TransportError)
    assert len(silent.asked) == 1  # the call has returned: no retry after the cut

    monkeypatch.setattr(sqs, "SHORT_CALL_TIMEOUT_S", 0.5)
    with pytest.raises(TransportError):
        silent.queue.delete("a-receipt-handle")  # a stopping poller's delete: made, at its deadline
    assert len(silent.asked) == 2  # once, on a fresh connection, and not retried


def test_a_short_call_of_a_running_queue_is_still_retried_once(
    silent: SilentSqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the rule: before a stop a silent SQS gets its one retry."""
    monkeypatch.setattr(sqs, "SHORT_CALL_TIMEOUT_S", 0.5)
    with pytest.raises(TransportError):
        silent.queue.delete("a-receipt-handle")
    assert len(silent.asked) == 2
