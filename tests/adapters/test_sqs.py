"""SqsQueue against moto's SQS over real HTTP on loopback, plus its error mapping."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from executor.errors import (
    BadInputError,
    LeaseExpiredError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)
from executor.queue.sqs import SqsQueue, endpoint_for, sqs_endpoint
from executor.queue.sqs_errors import mapped_error
from tests.adapters.conftest import make_lease
from tests.faults.ledger import wait_until


@pytest.fixture
def admin(moto_endpoint: str) -> Any:
    """A plain boto3 client, standing in for the producer (GMS) side of the queue."""
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1",
                        aws_access_key_id="admin", aws_secret_access_key="admin")


@pytest.fixture
def queue_url(admin: Any) -> Iterator[str]:
    url: str = admin.create_queue(QueueName=f"pool-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    yield url
    admin.delete_queue(QueueUrl=url)


@pytest.fixture
def queue(queue_url: str) -> Iterator[SqsQueue]:
    q = SqsQueue(make_lease(queue_url), connect_timeout_s=2.0, extra_read_timeout_s=5.0)
    yield q
    q.close()


def test_endpoint_comes_from_a_non_aws_queue_url() -> None:
    assert endpoint_for("http://127.0.0.1:4566/000000000000/pool") == "http://127.0.0.1:4566"
    assert endpoint_for("https://user@gw.example.test/1/q") == "https://gw.example.test"
    assert endpoint_for("https://sqs.eu-west-1.amazonaws.com/123456789012/pool") is None
    with pytest.raises(BadInputError):
        endpoint_for("ftp://127.0.0.1/q")


@pytest.mark.parametrize(("queue_url", "region", "endpoint"), [
    ("https://sqs.eu-west-1.amazonaws.com/1/q", "eu-west-1", "https://sqs.eu-west-1.amazonaws.com"),
    ("https://sqs.cn-north-1.amazonaws.com.cn/1/q", "cn-north-1", "https://sqs.cn-north-1.amazonaws.com.cn"),
    ("http://127.0.0.1:4566/1/q", "cn-north-1", "http://127.0.0.1:4566"),
])
def test_one_endpoint_for_the_queue_and_the_doctor(queue_url: str, region: str, endpoint: str) -> None:
    lease = dataclasses.replace(make_lease(queue_url), region=region)
    assert sqs_endpoint(lease) == endpoint  # what doctor_pools checks the proxy and DNS of


def test_repr_hides_credentials_and_bodies(queue: SqsQueue, admin: Any, queue_url: str) -> None:
    admin.send_message(QueueUrl=queue_url, MessageBody="password=hunter2")
    [msg] = queue.receive(1, 5, 30)
    shown = repr(queue) + repr(msg) + repr(queue.lease)
    assert "lease-secret-key-value" not in shown and "lease-session-token-value" not in shown
    assert "hunter2" not in shown and msg.receipt_handle not in shown


def test_receive_release_redeliver_delete(queue: SqsQueue, admin: Any, queue_url: str) -> None:
    admin.send_message(QueueUrl=queue_url, MessageBody="one")
    [first] = queue.receive(10, 5, 60)
    assert first.body == "one" and first.receive_count == 1
    assert first.sent_at is not None and first.sent_timestamp_s is not None
    assert queue.receive(10, 0, 60) == []  # hidden while we hold it
    queue.release(first.receipt_handle)
    [again] = queue.receive(10, 5, 60)
    assert again.message_id == first.message_id and again.receive_count == 2
    queue.delete(again.receipt_handle)
    assert queue.approximate_depth() == 0
    assert queue.receive(10, 0, 60) == []


def test_an_expired_visibility_redelivers(queue: SqsQueue, admin: Any, queue_url: str) -> None:
    admin.send_message(QueueUrl=queue_url, MessageBody="lapsed")
    [first] = queue.receive(1, 5, 1)
    # The long poll below returns as soon as SQS makes the message visible again.
    [again] = queue.receive(1, 10, 60)
    assert again.message_id == first.message_id and again.receive_count == 2


def test_extend_keeps_a_message_hidden(queue: SqsQueue, admin: Any, queue_url: str) -> None:
    admin.send_message(QueueUrl=queue_url, MessageBody="kept")
    [msg] = queue.receive(1, 5, 1)
    queue.extend(msg.receipt_handle, 60)
    # Waits past the original 1 s visibility: nothing may come back.
    assert queue.receive(1, 2, 60) == []
    queue.delete(msg.receipt_handle)


def test_receive_batches_and_depth(queue: SqsQueue, admin: Any, queue_url: str) -> None:
    for i in range(5):
        admin.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    assert queue.approximate_depth() == 5
    got: list[str] = []
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        got += [m.body for m in queue.receive(3 - len(got), 2, 60)]
    assert len(got) == 3
    assert queue.approximate_depth() == 2


def test_a_batch_delete_removes_its_messages_and_names_the_handles_refused(
    queue: SqsQueue, admin: Any, queue_url: str
) -> None:
    for i in range(4):
        admin.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    held: list[Any] = []
    deadline = time.monotonic() + 20
    while len(held) < 4 and time.monotonic() < deadline:
        held += queue.receive(4 - len(held), 2, 60)
    handles = [m.receipt_handle for m in held]
    refused = queue.delete_batch([handles[0], "not-a-receipt-handle", *handles[1:3]])
    assert [handle for handle, _ in refused] == ["not-a-receipt-handle"]
    assert "ReceiptHandleIsInvalid" in refused[0][1]
    assert queue.delete_batch(handles[3:]) == []
    left = admin.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert (left["ApproximateNumberOfMessages"], left["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    with pytest.raises(ValueError):
        queue.delete_batch([])
    with pytest.raises(ValueError):
        queue.delete_batch(["h"] * 11)


def test_invalid_receipt_handle_is_bad_input(queue: SqsQueue) -> None:
    with pytest.raises(BadInputError):
        queue.extend("not-a-receipt-handle", 30)
    with pytest.raises(BadInputError):
        queue.delete("not-a-receipt-handle")


def test_unknown_queue_is_a_final_error(moto_endpoint: str) -> None:
    q = SqsQueue(make_lease(f"{moto_endpoint}/123456789012/no-such-queue-{uuid.uuid4().hex[:8]}"))
    try:
        with pytest.raises(BadInputError):
            q.receive(1, 0, 30)
    finally:
        q.close()


def test_arguments_are_bounded(queue: SqsQueue) -> None:
    with pytest.raises(ValueError):
        queue.receive(1, 21, 30)  # a longer wait would make the poller hard to stop
    with pytest.raises(ValueError):
        queue.receive(11, 0, 30)
    with pytest.raises(ValueError):
        queue.extend("x", 43_201)


@pytest.mark.timeout(60)
def test_closed_port_is_a_transport_error(closed_port: int) -> None:
    q = SqsQueue(make_lease(f"http://127.0.0.1:{closed_port}/123456789012/pool"), connect_timeout_s=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError):
            q.receive(1, 0, 30)
        assert time.monotonic() - started < 30  # bounded by the timeouts, never a hang
    finally:
        q.close()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ExpiredToken", 400, LeaseExpiredError),
        ("InvalidClientTokenId", 403, LeaseExpiredError),
        ("RequestExpired", 400, LeaseExpiredError),
        ("ExpiredTokenException", 400, LeaseExpiredError),
        ("Throttling", 400, ThrottledError),
        ("AWS.SimpleQueueService.OverLimit", 403, ThrottledError),
        ("", 429, ThrottledError),
        ("InternalError", 500, TransportError),
        ("", 503, TransportError),
        ("AccessDenied", 403, NotAllowedError),
        ("ReceiptHandleIsInvalid", 400, BadInputError),
        ("AWS.SimpleQueueService.NonExistentQueue", 400, BadInputError),
    ],
)
def test_client_errors_map_onto_the_hierarchy(code: str, status: int, expected: type[Exception]) -> None:
    assert type(mapped_error("receive", code, status, "m")) is expected


def test_a_configured_proxy_is_used(queue_url: str, closed_port: int) -> None:
    proxies = {"http": f"http://127.0.0.1:{closed_port}"}
    q = SqsQueue(make_lease(queue_url), proxies=proxies, connect_timeout_s=1.0)
    try:
        with pytest.raises(TransportError, match=r"(?i)proxy"):
            q.approximate_depth()
    finally:
        q.close()


def _receive_in_thread(queue: SqsQueue, wait_s: int) -> tuple[threading.Thread, list[Any]]:
    """A receive of up to ``wait_s`` on its own thread; its outcome (a list or an error) lands
    in the returned list."""
    outcome: list[Any] = []

    def receive() -> None:
        try:
            outcome.append(queue.receive(1, wait_s, 30))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return thread, outcome


def _waiting_on_a_socket(queue: SqsQueue) -> bool:
    conn = queue._interrupter._current
    return conn is not None and getattr(conn, "sock", None) is not None


def test_interrupt_cuts_a_long_poll_short_and_leaves_the_short_calls(
    queue: SqsQueue, admin: Any, queue_url: str
) -> None:
    admin.send_message(QueueUrl=queue_url, MessageBody="held")
    [held] = queue.receive(1, 5, 60)
    thread, outcome = _receive_in_thread(queue, 20)  # the queue is empty now: a 20 s wait
    wait_until(lambda: _waiting_on_a_socket(queue), 10, "the long poll to be on the wire")
    queue.interrupt()
    thread.join(15)
    assert not thread.is_alive()
    # An empty queue answers a finished long poll with []: only the cut raises.
    assert len(outcome) == 1 and isinstance(outcome[0], TransportError)
    with pytest.raises(TransportError):
        queue.receive(1, 20, 30)  # refused before it waits
    queue.release(held.receipt_handle)  # a stopping poller can still give messages back ...
    queue.delete(held.receipt_handle)  # ... and settle them


def test_interrupt_before_a_receive_connects(queue_url: str) -> None:
    q = SqsQueue(make_lease(queue_url))
    try:
        q.interrupt()
        assert q.interrupted
        with pytest.raises(TransportError):
            q.receive(1, 20, 30)
    finally:
        q.close()
