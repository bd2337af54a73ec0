"""The pool's SQS queue, used with the lease's temporary credentials.

Owns the boto3 client and the translation of AWS answers into the executor's errors:

    ExpiredToken, InvalidClientTokenId, RequestExpired, ...   -> LeaseExpiredError (refresh)
    throttling, OverLimit, HTTP 429                           -> ThrottledError
    no connection, connect/read timeout, 5xx                  -> TransportError
    AccessDenied, other 403                                   -> NotAllowedError
    invalid receipt handle, unknown queue, other 4xx          -> BadInputError

Every call is bounded, so the poller that owns the queue can always stop promptly and keep
its leases alive: a receive waits at most ``max_wait_s`` (<= 20) and its read timeout is only
a few seconds longer, with no retry (the poller backs off itself); the short calls (extend,
release, delete, depth) have their own client with a read timeout of a few seconds and one
retry. A stalled connection therefore costs at most ``max_wait_s + 5`` s or about 10 s. A stop
need not wait for the long poll: ``interrupt()`` (from any thread) cuts the receive short
(``executor.queue.interrupt``), so a pool can poll the full 20 s at rest.

Memory: every client comes from the process's one botocore session (``executor.queue.aws_session``)
with the lease's credentials given to the client itself, so a lease refresh or another pool costs
a client (about 0.2 MB), not a session (8-9 MB).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from executor.datahub.lease import Lease
from executor.errors import (
    BadInputError,
    LeaseExpiredError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)
from executor.queue.aws_session import SESSION
from executor.queue.interrupt import interruptible

MAX_WAIT_S = 20
SHORT_CALL_TIMEOUT_S = 5.0
"""Read timeout of every call but receive: SQS answers these within milliseconds."""
MAX_BATCH = 10
MAX_VISIBILITY_S = 43_200
_EXPIRED = frozenset({
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "RequestExpired",
    "UnrecognizedClientException",
})
_THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequestsException",
    "OverLimit", "AWS.SimpleQueueService.OverLimit", "KmsThrottled",
})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "KmsAccessDenied"})
_SERVER = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable"})


@dataclass(frozen=True)
class ReceivedMessage:
    """One received message; ``receipt_handle`` is what extend/release/delete need."""

    message_id: str
    receipt_handle: str = field(repr=False)
    body: str = field(repr=False)
    receive_count: int
    """``ApproximateReceiveCount``: 1 on first delivery."""
    sent_timestamp_s: float | None
    """When the producer sent it (epoch seconds), if SQS said."""

    @property
    def sent_at(self) -> datetime | None:
        """``sent_timestamp_s`` as an aware UTC datetime."""
        if self.sent_timestamp_s is None:
            return None
        return datetime.fromtimestamp(self.sent_timestamp_s, timezone.utc)


def endpoint_for(queue_url: str) -> str | None:
    """``scheme://host:port`` of a queue URL that is not on AWS (e.g. a local control plane).

    For an AWS host, None: botocore derives the endpoint from the region itself. Any input that
    is not such a URL (a hostile lease's ``file:///etc/passwd``, a broken port or IPv6 literal)
    raises ``BadInputError`` without echoing it; nothing else escapes.
    """
    try:
        parts = urlsplit(queue_url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except (ValueError, TypeError, AttributeError):
        raise BadInputError("the lease's queue URL is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise BadInputError("the lease's queue URL is not an http(s) URL")
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")


class SqsQueue:
    """A lease's queue: receive, extend, release, delete, depth."""

    def __init__(
        self,
        lease: Lease,
        *,
        proxies: Mapping[str, str | None] | None = None,
        connect_timeout_s: float = 5.0,
        extra_read_timeout_s: float = 5.0,
        max_wait_s: int = MAX_WAIT_S,
    ) -> None:
        if not 0 <= max_wait_s <= MAX_WAIT_S:
            raise ValueError(f"max_wait_s must be in 0..{MAX_WAIT_S}")
        self.lease = lease
        self.queue_url = lease.queue_url
        self.max_wait_s = max_wait_s
        endpoint = endpoint_for(lease.queue_url)

        def client(read_timeout_s: float, attempts: int) -> Any:
            config = Config(
                region_name=lease.region,
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                retries={"mode": "standard", "max_attempts": attempts},
                proxies=dict(proxies) if proxies else None,
            )
            return SESSION.client("sqs", lease, endpoint, config)

        self._receiver: Any = client(max_wait_s + extra_read_timeout_s, 1)
        self._interrupter = interruptible(self._receiver)
        self._client: Any = client(SHORT_CALL_TIMEOUT_S, 2)

    def __repr__(self) -> str:
        return f"SqsQueue({self.queue_url!r})"

    def close(self) -> None:
        """Release the clients' connections."""
        self._receiver.close()
        self._client.close()

    def interrupt(self) -> None:
        """End a receive in progress now, and refuse every later one (any thread; one-shot).

        The cut receive raises ``TransportError``; a later one raises it before it waits.
        The short calls (extend, release, delete) are left alone: they are bounded anyway.
        """
        self._interrupter.interrupt()

    @property
    def interrupted(self) -> bool:
        """Whether ``interrupt()`` was called."""
        return self._interrupter.interrupted

    def receive(self, max_messages: int, wait_s: int, visibility_s: int) -> list[ReceivedMessage]:
        """Long-poll up to ``wait_s`` (<= ``max_wait_s``) for at most ``max_messages`` (<= 10),
        hiding them from other consumers for ``visibility_s``."""
        if not 1 <= max_messages <= MAX_BATCH:
            raise ValueError(f"max_messages must be in 1..{MAX_BATCH}")
        if not 0 <= wait_s <= self.max_wait_s:
            raise ValueError(f"wait_s must be in 0..{self.max_wait_s}")
        _check_visibility(visibility_s)
        if self._interrupter.interrupted:
            raise TransportError("SQS receive not made: the queue was interrupted (stopping)")
        with _mapped("receive"):
            answer = self._receiver.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=visibility_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        return [_message(m) for m in answer.get("Messages", [])]

    def extend(self, receipt_handle: str, visibility_s: int) -> None:
        """Keep a received message hidden for ``visibility_s`` more seconds from now."""
        _check_visibility(visibility_s)
        with _mapped("change of visibility"):
            self._client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=visibility_s
            )

    def release(self, receipt_handle: str) -> None:
        """Make a received message visible again at once, for any consumer."""
        self.extend(receipt_handle, 0)

    def delete(self, receipt_handle: str) -> None:
        """Remove a message for good (its result is in GMS)."""
        with _mapped("delete"):
            self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)

    def approximate_depth(self) -> int:
        """Messages waiting to be received (``ApproximateNumberOfMessages``)."""
        with _mapped("depth query"):
            answer = self._client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        return int(answer.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))


def _check_visibility(visibility_s: int) -> None:
    if not 0 <= visibility_s <= MAX_VISIBILITY_S:
        raise ValueError(f"visibility_s must be in 0..{MAX_VISIBILITY_S}")


def _message(raw: dict[str, Any]) -> ReceivedMessage:
    attributes = raw.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    return ReceivedMessage(
        message_id=str(raw.get("MessageId", "")),
        receipt_handle=str(raw.get("ReceiptHandle", "")),
        body=str(raw.get("Body", "")),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        sent_timestamp_s=int(sent) / 1000.0 if sent and str(sent).isdigit() else None,
    )


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Translate botocore's exceptions for ``what`` into the executor's hierarchy."""
    try:
        yield
    except ClientError as exc:
        raise _client_error(what, exc) from None
    except BotoCoreError as exc:
        raise TransportError(f"SQS {what} failed: {type(exc).__name__}: {str(exc)[:300]}") from None


def _client_error(what: str, exc: ClientError) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"SQS {what} failed: {code or 'HTTP ' + str(status)}: {str(error.get('Message', ''))[:300]}"
    short = code.rsplit(".", 1)[-1]
    if code in _EXPIRED or short in _EXPIRED:
        return LeaseExpiredError(text)
    if code in _THROTTLED or short in _THROTTLED or status == 429:
        return ThrottledError(text)
    if code in _SERVER or status >= 500:
        return TransportError(text)
    if code in _DENIED or short in _DENIED or status == 403:
        return NotAllowedError(text)
    return BadInputError(text)
