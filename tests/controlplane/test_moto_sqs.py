"""The control plane's moto runs cheaper SQS helpers (``moto_sqs``): they must be the ones moto
calls once the control plane has started, and give the answers moto's own would."""

from __future__ import annotations

import datetime
import string
import time
from typing import Any

import moto.core.utils
import moto.sqs.models
from moto.moto_api._internal import mock_random
from moto.moto_api._internal.moto_random import MotoRandom

from executor.local.controlplane import moto_sqs
from executor.local.controlplane.server import ControlPlane
from tests.fixtures.controlplane import leased_sqs


def test_a_started_control_plane_puts_the_cheaper_helpers_where_moto_calls_them(
    control_plane: ControlPlane,
) -> None:
    models: Any = moto.sqs.models
    assert models.unix_time is moto_sqs.unix_time
    assert models.unix_time_millis is moto_sqs.unix_time_millis
    assert models.generate_receipt_handle is moto_sqs.receipt_handle
    assert models.SQSBackend.is_message_valid_based_on_retention_period is moto_sqs.is_retained
    assert MotoRandom.get_random_string is moto_sqs.get_random_string


def test_the_helpers_answer_as_motos_own() -> None:
    before, now, after = time.time(), moto_sqs.unix_time(), time.time()
    assert before <= now <= after
    assert abs(moto.core.utils.unix_time() - moto_sqs.unix_time()) < 1.0
    instant = datetime.datetime(2024, 5, 1, 12, 30, 15, 250000)
    assert moto_sqs.unix_time(instant) == moto.core.utils.unix_time(instant)
    assert moto_sqs.unix_time_millis(instant) == moto.core.utils.unix_time_millis(instant)
    handles = {moto_sqs.receipt_handle() for _ in range(50)}
    assert len(handles) == 50
    assert all(len(h) == 185 and set(h) <= set(string.ascii_lowercase) for h in handles)
    seen = set("".join(handles))
    assert seen == set(string.ascii_lowercase)  # 9,250 draws reach every letter
    text = moto_sqs.get_random_string(mock_random, length=52)
    assert len(text) == 52 and set(text) <= set(string.ascii_letters + string.digits)
    letters = moto_sqs.get_random_string(mock_random, length=400, include_digits=False, lower_case=True)
    assert set(letters) == set(string.ascii_lowercase)


def test_a_message_past_its_retention_is_not_received_and_a_fresh_one_is(control_plane: ControlPlane) -> None:
    sqs, url = leased_sqs(control_plane)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "60"})
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    sqs.send_message(QueueUrl=url, MessageBody="old")
    queue_name = url.rsplit("/", 1)[-1]
    backends: list[Any] = [b for _, _, b in moto.sqs.models.sqs_backends.iter_backends()]
    backend = next(b for b in backends if queue_name in b.queues)
    queue = backend.queues[queue_name]
    old = queue._messages[1]
    old.sent_timestamp -= 61_000  # sent 61 s ago: past the 60 s retention
    assert not backend.is_message_valid_based_on_retention_period(queue_name, old)
    assert backend.is_message_valid_based_on_retention_period(queue_name, queue._messages[0])
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    received = answer.get("Messages", [])
    assert [m["Body"] for m in received] == ["fresh"]
    handle = received[0]["ReceiptHandle"]
    assert len(handle) == 185 and set(handle) <= set(string.ascii_lowercase)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
