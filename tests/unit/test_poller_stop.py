"""A poller at rest waits in SQS's 20 s long poll; its stop must not wait for it.

A real QueuePoller with a real ``SqsQueue`` on moto over loopback HTTP, a lease and free
capacity, so it long-polls an empty queue for 20 s; its stop (from another thread, as its
supervisor's) must end within a deadline shorter than that wait, without a warning about a
failed receive, and leave its connections closed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from loguru import logger

from executor.config import ExecutorConfig
from executor.pool.context import PoolContext
from executor.pool.messages import LEASER, RUNNER, LeaseGranted
from executor.pool.poller import QueuePoller
from executor.supervision import ChildContext, Directory
from tests.adapters.conftest import make_lease
from tests.faults.ledger import wait_until
from tests.unit.test_poller_extensions import Health, Inbox


@pytest.fixture
def queue_url() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        admin = boto3.client("sqs", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                             aws_access_key_id="admin", aws_secret_access_key="admin")
        yield admin.create_queue(QueueName=f"pool-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        admin.close()
    finally:
        server.stop()


class Beats(Health):
    """``Health`` that also lets an ended actor go."""

    def forget(self, component: str) -> None:
        """Nothing is watched here."""


def _actor(ref: pykka.ActorRef[Any]) -> Any:
    """The poller itself, read from outside its thread: its proxy would queue behind the very
    receive under test. Its strand inbox holds it (weakly)."""
    return ref.actor_inbox._actor()  # type: ignore[attr-defined]


def _in_long_poll(ref: pykka.ActorRef[Any]) -> bool:
    """Whether the poller waits in a receive on the wire."""
    queue = _actor(ref).queue
    conn = None if queue is None else queue._interrupter._current
    return conn is not None and getattr(conn, "sock", None) is not None


@pytest.mark.timeout(60)
def test_a_stop_cuts_the_long_poll_short(tmp_path: Path, queue_url: str) -> None:
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path),
        "pools": [{"id": "default", "visibility_s": 120, "poll_wait_s": 20}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test",
                       health=Beats())
    directory = Directory()
    siblings = {LEASER: Inbox.start(), RUNNER: Inbox.start()}
    for name, sibling in siblings.items():
        directory.put(name, sibling)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING")
    ref = QueuePoller.start(ChildContext("poller", "root/pool:default/poller", 1, None, directory), pool)
    try:
        ref.tell(LeaseGranted(make_lease(queue_url)))  # the empty task book has room: it receives
        wait_until(lambda: _in_long_poll(ref), 15, "the poller to wait in its long poll")
        poller = _actor(ref)
        queue = poller.queue
        # A receive left to itself would hold the stop for its 20 s: this deadline is shorter.
        ref.stop(block=True, timeout=10)
        assert queue.interrupted
        assert poller.loop_ended.wait(10)
        assert not [w for w in warnings if "receive failed" in w]
    finally:
        logger.remove(sink)
        if ref.is_alive():
            ref.stop(block=True, timeout=30)
        for sibling in siblings.values():
            sibling.stop(block=True, timeout=10)
