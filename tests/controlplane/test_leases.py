"""Leased SQS credentials through the gateway: expiry, unknown keys, pool scoping, redrive."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from executor.local.controlplane.leases import LeaseBook, LeaseState
from executor.local.controlplane.server import ControlPlane
from tests.fixtures.controlplane import executor_config, leased_sqs


def error_code(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def test_expired_lease_gets_expired_token_and_a_new_lease_works(control_plane: Any) -> None:
    sqs, queue_url = leased_sqs(control_plane, "default")
    sqs.send_message(QueueUrl=queue_url, MessageBody="{}")
    other_sqs, other_url = leased_sqs(control_plane, "other")

    assert control_plane.expire_leases("default") >= 1
    assert error_code(lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)) == "ExpiredToken"
    other_sqs.receive_message(QueueUrl=other_url, WaitTimeSeconds=0)  # another pool's lease still works

    fresh, fresh_url = leased_sqs(control_plane, "default")
    assert len(fresh.receive_message(QueueUrl=fresh_url, WaitTimeSeconds=1)["Messages"]) == 1


def test_short_leases_expire_by_themselves(tmp_path: Any) -> None:
    # 5 s, not 1: on a loaded machine, making the boto3 client after the lease took over a second.
    with ControlPlane(pools=("default",), state_dir=str(tmp_path), lease_seconds=5) as cp:
        sqs, queue_url = leased_sqs(cp, "default")
        sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
        deadline = time.monotonic() + 15
        while True:
            try:
                sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ExpiredToken"
                break
            assert time.monotonic() < deadline, "the lease did not expire"
            time.sleep(0.1)


def test_unknown_keys_and_other_pools_queues_are_refused(control_plane: Any) -> None:
    config = executor_config(control_plane, "default")
    endpoint = config["queueUrl"].rsplit("/", 2)[0]
    stranger = boto3.session.Session().client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIANOTISSUED",
        aws_secret_access_key="x",
    )
    assert error_code(lambda: stranger.receive_message(QueueUrl=config["queueUrl"])) == "InvalidClientTokenId"

    sqs, _ = leased_sqs(control_plane, "default")
    other_queue = executor_config(control_plane, "other")["queueUrl"]
    assert error_code(lambda: sqs.receive_message(QueueUrl=other_queue, WaitTimeSeconds=0)) == "AccessDenied"


def test_credentials_are_real_sts_credentials(control_plane: Any) -> None:
    config = executor_config(control_plane, "default")
    assert config["accessKeyId"].startswith("ASIA")
    assert config["secretKeyId"] and config["sessionToken"]
    lease_end = datetime.fromisoformat(config["expiration"].replace("Z", "+00:00")).timestamp()
    assert 3500 < lease_end - time.time() <= 3600


def test_messages_go_to_the_dead_letter_queue_after_max_receives(tmp_path: Any) -> None:
    with ControlPlane(pools=("default",), state_dir=str(tmp_path), max_receive_count=2) as cp:
        sqs, queue_url = leased_sqs(cp, "default")
        sqs.send_message(QueueUrl=queue_url, MessageBody="poison")
        for _ in range(2):
            got = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0, WaitTimeSeconds=1)
            assert len(got["Messages"]) == 1
        assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages") is None
        inspect = boto3.session.Session().client(
            "sqs",
            endpoint_url=cp.sqs_endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        dead = inspect.receive_message(QueueUrl=cp.dlq_url("default"), WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in dead] == ["poison"]


def test_lease_book_states() -> None:
    now = [1000.0]
    book = LeaseBook(clock=lambda: now[0])
    book.issue("A", "p1", 60)
    book.issue("B", "p2", 60)
    assert book.check("A")[0] is LeaseState.VALID
    assert book.check("Z") == (LeaseState.UNKNOWN, None)
    assert book.expire("p1") == 1
    assert book.check("A")[0] is LeaseState.EXPIRED
    assert book.check("B")[0] is LeaseState.VALID
    now[0] += 60
    assert book.check("B")[0] is LeaseState.EXPIRED
