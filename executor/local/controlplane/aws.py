"""The embedded moto server: SQS queues per pool (with a dead-letter queue) and STS credentials.

moto keeps its state in process-global memory, shared by every moto server in the process,
so queue names carry a per-instance tag (``<pool>-<tag>``): two control planes in one test
process never see each other's messages. Queues are deleted again at stop. moto holds
everything in memory: a restarted control plane creates its queues anew, and messages that
were queued or in flight are gone (docs/controlplane.md says so).

moto's app (with ``moto_app``'s cheaper dispatcher) is served by ``moto_server``, which keeps the
control plane's own connections alive. The control plane's own ``SendMessage`` (the dispatch of
every execution request) is one JSON-protocol POST on one kept-alive connection (``upstream``),
not a boto3 call: botocore spent about 2 ms of CPU on it. moto does not check signatures, so the
request carries a SigV4 credential scope (moto picks SQS and the account from it), unsigned.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from loguru import logger

from executor.local.controlplane.moto_server import MotoServer
from executor.local.controlplane.upstream import KeptConnection, NoDelayConnection

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
"""moto's default account; credentials from AssumeRole into it land in the same account."""
_ADMIN_KEY = "controlplane-admin"
_SESSION_LOCK = threading.Lock()
STS_MIN_DURATION_S = 900
STS_MAX_DURATION_S = 43200
_SEND_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "AmazonSQS.SendMessage",
    "Authorization": f"AWS4-HMAC-SHA256 Credential={_ADMIN_KEY}/20240101/{REGION}/sqs/aws4_request, "
    "SignedHeaders=host;x-amz-target, Signature=unsigned",
}
"""What moto needs to route a SendMessage: its service, region and account come from the scope."""


@cache
def _boto_session() -> Any:
    """One boto3 session per process: a new one re-reads botocore's endpoint data (~0.1 s)."""
    import boto3

    return boto3.session.Session()


def _close_after(request: Any, **_kwargs: Any) -> None:
    """botocore ``before-send``: ask the server to close the connection after its answer."""
    request.headers["Connection"] = "close"


@dataclass(frozen=True)
class PoolQueues:
    """A pool's queue and dead-letter queue, with moto-side URLs."""

    pool_id: str
    queue_name: str
    queue_url: str
    dlq_name: str
    dlq_url: str


@dataclass(frozen=True)
class StsCredentials:
    """Temporary credentials from moto's STS AssumeRole."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime


LONG_POLL_CUT_S = 3.0
"""How long a stop waits for moto's handlers: a long poll ends within one of its one-second steps."""


class MotoBackend:
    """A moto server on ``host`` (ephemeral port) and admin clients for SQS and STS;
    ``keep_alive_all``: every client's connection is kept (``MotoServer``)."""

    def __init__(self, host: str = "127.0.0.1", keep_alive_all: bool = False) -> None:
        self._host = host
        self._keep_alive_all = keep_alive_all
        self._server: MotoServer | None = None
        self._sqs: Any = None
        self._sts: Any = None
        self._sends: KeptConnection | None = None
        self._send_lock = threading.Lock()
        self.endpoint = ""

    def start(self) -> None:
        """Serve moto in a thread; returns once it accepts connections."""
        from executor.local.controlplane.moto_app import Dispatcher

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = MotoServer(self._host, Dispatcher(), self._keep_alive_all)
        self._server.start()
        self.endpoint = self._server.url
        port = self._server.port
        self._sends = KeptConnection(lambda: NoDelayConnection(self._host, port, timeout=30))
        self._sends.open()  # now, so its server thread is there before any caller's
        self._sqs = self.client("sqs")
        self._sts = self.client("sts")

    def client(self, service: str) -> Any:
        """A boto3 client for moto with admin credentials (moto accepts any)."""
        from botocore.config import Config

        with _SESSION_LOCK:  # a boto3 session is not thread-safe; its clients are
            client = _boto_session().client(
                service,
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=_ADMIN_KEY,
                aws_secret_access_key=_ADMIN_KEY,
                config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
            )
        # Its rare calls (queues, a lease's AssumeRole) close their connection even where moto
        # keeps clients' (``keep_alive_all``): no server thread waits on an idle admin client.
        client.meta.events.register("before-send", _close_after)
        return client

    def create_pool_queues(self, pool_id: str, tag: str, max_receive_count: int) -> PoolQueues:
        """Create ``<pool>-<tag>`` and its DLQ, with redrive after ``max_receive_count`` receives."""
        name = f"{pool_id}-{tag}"
        dlq_name = f"{name}-dlq"
        dlq_url = self._sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
        dlq_arn = self._sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
        url = self._sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        return PoolQueues(pool_id, name, url, dlq_name, dlq_url)

    def send(self, queue_url: str, body: str) -> str:
        """Put one message on a queue; returns its message id (RuntimeError if moto refuses)."""
        request = json.dumps({"QueueUrl": queue_url, "MessageBody": body}).encode()
        with self._send_lock:
            if self._sends is None:
                raise RuntimeError("moto is not running")
            status, _, data = self._sends.call("POST", "/", request, _SEND_HEADERS)
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            answer = data[:200].decode("utf-8", "replace")
        if status != 200 or not isinstance(answer, dict) or "MessageId" not in answer:
            raise RuntimeError(f"moto refused SendMessage: HTTP {status} {str(answer)[:200]}")
        return str(answer["MessageId"])

    def assume_role(self, pool_id: str, duration_s: int) -> StsCredentials:
        """Real temporary credentials from moto's STS for the pool's (nominal) role."""
        answer = self._sts.assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/remote-executor-{pool_id}",
            RoleSessionName=f"pool-{pool_id}"[:64],
            DurationSeconds=max(STS_MIN_DURATION_S, min(STS_MAX_DURATION_S, duration_s)),
        )["Credentials"]
        return StsCredentials(
            access_key_id=answer["AccessKeyId"],
            secret_access_key=answer["SecretAccessKey"],
            session_token=answer["SessionToken"],
            expiration=answer["Expiration"],
        )

    def delete_queues(self, queues: list[PoolQueues]) -> None:
        """Remove queues so moto's process-global memory does not grow across instances."""
        for q in queues:
            for url in (q.queue_url, q.dlq_url):
                try:
                    self._sqs.delete_queue(QueueUrl=url)
                except Exception:  # best effort at shutdown
                    logger.debug("could not delete queue {}", url)

    def stop(self) -> None:
        """Stop serving and close the sockets; a long poll in flight ends at its next one-second
        step (``moto_sqs.LongPollCut``), so the stop waits for it rather than leave its thread."""
        with self._send_lock:
            if self._sends is not None:
                self._sends.close()
                self._sends = None
        if self._server is not None:
            self._server.stop(timeout_s=LONG_POLL_CUT_S)
        self._server = None

