"""The control plane remembers two of moto's per-request pure helpers: the answers must be the
ones moto's own functions give, wherever moto calls them."""

from __future__ import annotations

import moto.core.responses
import moto.core.utils
import moto.sqs.models
from moto.sqs.responses import SQSResponse

from executor.local.controlplane.moto_app import remember_pure_helpers

NAMES = ["ApproximateNumberOfMessagesNotVisible", "QueueArn", "theNewAttribute", "KMSMasterKeyId",
         "FifoQueue", "", "A", "already_snake", "HTTPHeader", "SqsManagedSseEnabled"]


def test_remembered_helpers_answer_as_moto_does() -> None:
    remember_pure_helpers()
    remember_pure_helpers()  # a second call changes nothing (no cache around a cache)
    camel = moto.sqs.models.camelcase_to_underscores
    original = camel.__wrapped__  # type: ignore[attr-defined]
    assert not hasattr(original, "cache_info")
    for _ in range(2):  # the second round comes from the cache
        assert [camel(n) for n in NAMES] == [original(n) for n in NAMES]
    assert moto.core.responses.camelcase_to_underscores is camel is moto.core.utils.camelcase_to_underscores
    assert camel("QueueArn") == "queue_arn" and camel("KMSMasterKeyId") == "kms_master_key_id"
    methods = moto.core.responses.method_names_from_class
    assert methods(SQSResponse) == methods.__wrapped__(SQSResponse)  # type: ignore[attr-defined]
    assert "receive_message" in methods(SQSResponse)
