"""The pool's SQS queue, used with the lease's temporary credentials.

Its calls go over ``executor.queue.sqs_wire`` (SQS's JSON protocol on bare HTTP/1.1, SigV4-signed
by ``executor.queue.sigv4``, without a botocore client: half the CPU of one), and AWS's answers
become the executor's errors (``executor.queue.sqs_errors``):

    ExpiredToken, InvalidClientTokenId, RequestExpired, ...   -> LeaseExpiredError (refresh)
    throttling, OverLimit, HTTP 429                           -> ThrottledError
    no connection, connect/read timeout, 5xx, oversize answer -> TransportError
    AccessDenied, other 403                                   -> NotAllowedError
    invalid receipt handle, unknown queue, other 4xx          -> BadInputError

Every call is bounded, so the poller that owns the queue can always stop promptly and keep
its leases alive: a receive waits at most ``max_wait_s`` (<= 20) and its deadline is only
a few seconds longer, with no retry (the poller backs off itself); the short calls (extend,
release, delete, depth) have their own connections, a deadline of a few seconds and one
retry. A stalled connection therefore costs at most ``max_wait_s + 10`` s or about 10 s (twice
that with the retry). A stop need not wait for the long poll: ``interrupt()`` (from any thread)
cuts the receive short (``executor.queue.interrupt``), so a pool can poll the full 20 s at rest.
Answers are capped: a short call's at 64 KiB, a receive's at 2 MiB per message asked for.

Credentials: each queue signs with its lease's; a lease refresh makes a new queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from executor.datahub.lease import REGION, Lease
from executor.errors import BadInputError, TransportError
from executor.queue.interrupt import Interrupter
from executor.queue.sqs_wire import SqsWire

MAX_WAIT_S = 20
SHORT_CALL_TIMEOUT_S = 5.0
"""How long SQS may take to answer any call but a receive (it answers within milliseconds)."""
MAX_BATCH = 10
MAX_VISIBILITY_S = 43_200
SHORT_ANSWER_BYTES = 64 * 1024
"""An extend, delete or depth answer is a few bytes; anything past this is not SQS."""
MAX_NUMBER_DIGITS = 18
"""SQS's numbers (counts, epoch milliseconds) have at most 13 digits; longer ones are ignored."""
RECEIVE_BYTES_PER_MESSAGE = 2 * 1024 * 1024
"""A message is at most 1 MiB; its JSON escaping and attributes may double that."""


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

    For an AWS host, None: the endpoint comes from the region (``regional_endpoint``). Any input that
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


def regional_endpoint(region: str) -> str:
    """SQS's endpoint for ``region`` on AWS, as botocore's rule set builds it by default.

    The lease says where the queue is: the host's AWS configuration (``~/.aws/config``,
    ``AWS_ENDPOINT_URL_SQS``, the FIPS and dual-stack switches), which a botocore client would
    also have read, plays no part.
    """
    if not REGION.match(region):
        raise BadInputError("the lease's region is not an AWS region name")
    return f"https://sqs.{region}.amazonaws.com" + (".cn" if region.startswith("cn-") else "")


def sqs_endpoint(lease: Lease) -> str:
    """Where ``lease``'s queue calls go: the queue's own host off AWS, else the regional
    endpoint. The one answer for the queue and for ``doctor``'s proxy and DNS checks."""
    return endpoint_for(lease.queue_url) or regional_endpoint(lease.region)


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
        self._extra_s = extra_read_timeout_s
        endpoint = sqs_endpoint(lease)
        self._interrupter = Interrupter()
        self._receiver = SqsWire(lease, endpoint, proxies=proxies, connect_timeout_s=connect_timeout_s,
                                 attempts=1, watcher=self._interrupter)
        self._short_calls = Interrupter()
        """Watches the short calls' connections, so that a stop can cut the one in progress."""
        self._client = SqsWire(lease, endpoint, proxies=proxies, connect_timeout_s=connect_timeout_s,
                               attempts=2, watcher=self._short_calls)

    def __repr__(self) -> str:
        return f"SqsQueue({self.queue_url!r})"

    def close(self) -> None:
        """Release the connections."""
        self._receiver.close()
        self._client.close()

    def interrupt(self) -> None:
        """End a receive in progress now, and refuse every later one (any thread; one-shot).

        The cut receive raises ``TransportError``; a later one raises it before it waits. A
        short call in progress (an extension, a delete, the depth) is cut too: against an SQS
        that does not answer it would hold the stop for two attempts of ``SHORT_CALL_TIMEOUT_S``,
        about as long as the supervisor waits for a stop. Later short calls still go out (the
        deletes a stopping poller makes), each on a fresh connection and without a retry.
        """
        self._interrupter.interrupt()
        self._short_calls.cut_current()  # idle since its call ended: the next call drops it

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
        answer = self._receiver.call("receive", "ReceiveMessage", {
            "QueueUrl": self.queue_url, "MaxNumberOfMessages": max_messages, "WaitTimeSeconds": wait_s,
            "VisibilityTimeout": visibility_s,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        }, wait_s=wait_s + self._extra_s, max_bytes=max_messages * RECEIVE_BYTES_PER_MESSAGE)
        messages = answer.get("Messages") or []
        if not isinstance(messages, list):
            raise TransportError("SQS receive failed: its Messages are not a list")
        return [_message(m) for m in messages if isinstance(m, dict)]

    def extend(self, receipt_handle: str, visibility_s: int) -> None:
        """Keep a received message hidden for ``visibility_s`` more seconds from now."""
        _check_visibility(visibility_s)
        self._short("change of visibility", "ChangeMessageVisibility", {
            "QueueUrl": self.queue_url, "ReceiptHandle": receipt_handle, "VisibilityTimeout": visibility_s,
        })

    def release(self, receipt_handle: str) -> None:
        """Make a received message visible again at once, for any consumer."""
        self.extend(receipt_handle, 0)

    def delete(self, receipt_handle: str) -> None:
        """Remove a message for good (its result is in GMS)."""
        self._short("delete", "DeleteMessage", {"QueueUrl": self.queue_url, "ReceiptHandle": receipt_handle})

    def delete_batch(self, receipt_handles: Sequence[str]) -> list[tuple[str, str]]:
        """Remove up to 10 messages in one call (``DeleteMessageBatch``); the handles SQS refused,
        each with its reason (the message then reappears after its lease, never lost). An entry
        the answer names neither way was taken: SQS lists each refusal."""
        if not 1 <= len(receipt_handles) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1..{MAX_BATCH} receipt handles")
        entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(receipt_handles)]
        payload = {"QueueUrl": self.queue_url, "Entries": entries}
        answer = self._short("batch delete", "DeleteMessageBatch", payload)
        failed = answer.get("Failed")
        refused = []
        for entry in failed if isinstance(failed, list) else []:
            index = _whole(entry.get("Id") if isinstance(entry, dict) else None, -1)
            if 0 <= index < len(receipt_handles):
                reason = f"{str(entry.get('Code', ''))[:100]}: {str(entry.get('Message', ''))[:200]}"
                refused.append((receipt_handles[index], reason))
        return refused

    def approximate_depth(self) -> int:
        """Messages waiting to be received (``ApproximateNumberOfMessages``)."""
        answer = self._short("depth query", "GetQueueAttributes", {
            "QueueUrl": self.queue_url, "AttributeNames": ["ApproximateNumberOfMessages"],
        })
        attributes = answer.get("Attributes")
        depth = attributes.get("ApproximateNumberOfMessages", 0) if isinstance(attributes, dict) else 0
        return _whole(depth, 0)

    def _short(self, what: str, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self.interrupted:
            self._client.close()  # an idle connection may be one the stop cut
        return self._client.call(what, operation, payload, wait_s=SHORT_CALL_TIMEOUT_S,
                                 max_bytes=SHORT_ANSWER_BYTES, give_up=lambda: self.interrupted)


def _check_visibility(visibility_s: int) -> None:
    if not 0 <= visibility_s <= MAX_VISIBILITY_S:
        raise ValueError(f"visibility_s must be in 0..{MAX_VISIBILITY_S}")


def _message(raw: dict[str, Any]) -> ReceivedMessage:
    attributes = raw.get("Attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    return ReceivedMessage(
        message_id=str(raw.get("MessageId", "")),
        receipt_handle=str(raw.get("ReceiptHandle", "")),
        body=str(raw.get("Body", "")),
        receive_count=_count(attributes.get("ApproximateReceiveCount")),
        sent_timestamp_s=_sent_s(attributes.get("SentTimestamp")),
    )


def _count(value: Any) -> int:
    """``ApproximateReceiveCount`` as a number; 1 (a first delivery) when SQS did not say."""
    return _whole(value, 1)


def _sent_s(value: Any) -> float | None:
    """``SentTimestamp`` (epoch milliseconds) in seconds; None when SQS did not say."""
    millis = _whole(value, -1)
    return millis / 1000.0 if millis >= 0 else None


def _whole(value: Any, default: int) -> int:
    """A number SQS sends as a string of ASCII digits (a count, a timestamp), else ``default``.

    Why so strict: ``str.isdigit`` accepts "³" (``int`` does not), ``int`` refuses more than
    4300 digits, and a number that large overflows a float; any of these from a hostile answer
    would raise past the poller, which expects only the executor's errors.
    """
    text = str(value)
    if text.isascii() and text.isdecimal() and len(text) <= MAX_NUMBER_DIGITS:
        return int(text)
    return default
