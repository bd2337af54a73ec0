"""SqsQueue's own transport: AWS's error answers, retries, answer caps and deadlines.

The lease errors come from the real control plane's SQS gateway (what it answers as SQS does:
JSON ``__type`` plus ``x-amzn-query-error``); throttling, 5xx and broken answers from a small
loopback server that answers the way AWS (or a broken middlebox) would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from executor.datahub.lease import Lease
from executor.errors import (
    BadInputError,
    LeaseExpiredError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)
from executor.queue import sqs_wire
from executor.queue.sqs import SHORT_ANSWER_BYTES, SqsQueue
from executor.queue.sqs_errors import mapped_error, parse_error
from tests.adapters.conftest import make_lease
from tests.fixtures.http_thread import Answering, serving
from tests.security.gms_peer import HostilePeer, drip

JSON = "application/x-amz-json-1.0"


@pytest.fixture(scope="module")
def two_pools() -> Iterator[Any]:
    from executor.local.controlplane.server import ControlPlane

    cp = ControlPlane(pools=("a", "b"), lease_seconds=3600).start()
    try:
        yield cp
    finally:
        cp.stop()


def _lease(cp: Any, pool: str, queue_url: str | None = None) -> Lease:
    [config] = cp.executor_configs([pool])
    if queue_url is not None:
        config = {**config, "queueUrl": queue_url}
    return Lease.from_executor_config(config)


def test_an_unknown_key_is_an_expired_lease(two_pools: Any) -> None:
    queue = SqsQueue(make_lease(two_pools.gateway_queue_url("a")))  # a key the gateway never issued
    try:
        with pytest.raises(LeaseExpiredError, match="InvalidClientTokenId"):
            queue.approximate_depth()
    finally:
        queue.close()


def test_an_expired_lease_and_another_pools_queue(two_pools: Any) -> None:
    lease = _lease(two_pools, "b")
    theirs = SqsQueue(_lease(two_pools, "a", two_pools.gateway_queue_url("b")))
    queue = SqsQueue(lease)
    try:
        with pytest.raises(NotAllowedError, match="AccessDenied"):
            theirs.receive(1, 0, 30)
        assert queue.receive(1, 0, 30) == []  # the lease works ...
        two_pools.expire_leases("b")
        with pytest.raises(LeaseExpiredError, match="ExpiredToken"):  # ... until it expires
            queue.receive(1, 0, 30)
    finally:
        queue.close()
        theirs.close()


class Scripted(Answering):
    """Answers each POST with the next of ``script`` (status, headers, body); counts them."""

    script: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    calls: ClassVar[list[str]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.calls.append(self.headers["X-Amz-Target"])
            status, headers, body = self.script.pop(0) if self.script else (200, {}, b"{}")
        if headers.pop("X-Test-Unbounded", None):  # no length: the body runs until the close
            self.send_response(status)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.answer(body, status, {"Content-Type": JSON, **headers})


class QuietServer(ThreadingHTTPServer):
    """Says nothing when a client drops an answer it refused (the oversize tests)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SqsQueue, type[Scripted]]]:
    """A queue on a scripted loopback endpoint, without the retry's random wait."""
    monkeypatch.setattr(sqs_wire, "RETRY_JITTER_S", 0.0)
    handler: type[Scripted] = type("Handler", (Scripted,), {"script": [], "calls": []})
    with serving(QuietServer(("127.0.0.1", 0), handler), "sqs-scripted") as server:
        port = server.server_address[1]
        queue = SqsQueue(make_lease(f"http://127.0.0.1:{port}/123456789012/pool"), connect_timeout_s=2.0,
                         extra_read_timeout_s=2.0)
        try:
            yield queue, handler
        finally:
            queue.close()


def _aws_error(exception: str, query_code: str, status: int = 400) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"__type": f"com.amazonaws.sqs#{exception}", "message": "m"}).encode()
    return status, {"x-amzn-query-error": f"{query_code};Sender"}, body


def test_throttling_is_retried_once_then_raised(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    queue, handler = scripted
    handler.script += [_aws_error("ThrottlingException", "Throttling")] * 2
    with pytest.raises(ThrottledError):
        queue.delete("handle")
    assert handler.calls == ["AmazonSQS.DeleteMessage"] * 2


def test_a_5xx_is_retried_once_and_the_retry_succeeds(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    queue, handler = scripted
    handler.script += [(500, {}, b""), (200, {}, b"{}")]
    queue.extend("handle", 30)
    assert handler.calls == ["AmazonSQS.ChangeMessageVisibility"] * 2


def test_a_receive_is_never_retried(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    queue, handler = scripted
    handler.script += [(503, {"Content-Type": "text/html"}, b"<html>unavailable</html>")]
    with pytest.raises(TransportError, match="HTTP 503"):
        queue.receive(1, 0, 30)
    assert handler.calls == ["AmazonSQS.ReceiveMessage"]


def test_query_protocol_codes_and_bad_input(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    queue, handler = scripted
    xml = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>"
    handler.script += [
        (403, {"Content-Type": "text/xml"}, xml),
        _aws_error("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
        _aws_error("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"),
    ]
    with pytest.raises(NotAllowedError, match="AccessDenied: no"):
        queue.delete("handle")
    with pytest.raises(BadInputError, match="ReceiptHandleIsInvalid"):
        queue.delete("handle")
    with pytest.raises(BadInputError, match="NonExistentQueue"):
        queue.approximate_depth()


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversize_answer_is_refused(scripted: tuple[SqsQueue, type[Scripted]], declared: bool) -> None:
    queue, handler = scripted
    body = b'{"Attributes": {"x": "' + b"y" * (SHORT_ANSWER_BYTES + 10) + b'"}}'
    headers = {} if declared else {"X-Test-Unbounded": "1"}
    handler.script += [(200, dict(headers), body), (200, dict(headers), body)]
    with pytest.raises(TransportError, match="TooLarge"):
        queue.approximate_depth()
    handler.script.clear()
    assert queue.approximate_depth() == 0  # the connection that held the rest is gone


def test_a_broken_answer_is_a_transport_error(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    queue, handler = scripted
    handler.script += [(200, {}, b"[1, 2]"), (200, {}, b"not json"), (200, {}, b'{"Messages": {"a": 1}}')]
    with pytest.raises(TransportError, match="not a JSON object"):
        queue.receive(1, 0, 30)
    with pytest.raises(TransportError, match="not a JSON object"):
        queue.receive(1, 0, 30)
    with pytest.raises(TransportError, match="not a list"):
        queue.receive(1, 0, 30)


def test_json_nested_too_deep_is_a_broken_answer(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    """``json.loads`` raises ``RecursionError`` (no ``ValueError``) on deep nesting: in an answer
    or an error answer, it must be the call's own error, never an exception in the actor."""
    queue, handler = scripted
    handler.script += [(200, {}, b"[" * 20_000), (400, {}, b"[" * 20_000)]
    with pytest.raises(TransportError, match="not a JSON object"):
        queue.receive(1, 0, 30)
    with pytest.raises(BadInputError):
        queue.receive(1, 0, 30)


def test_messages_are_parsed_as_sqs_sends_them(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    queue, handler = scripted
    answer = {"Messages": [
        {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": "{}", "MD5OfBody": "x",
         "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123"}},
        {"MessageId": "m-2", "ReceiptHandle": "r-2", "Body": "b"},
    ]}
    handler.script += [(200, {}, json.dumps(answer).encode())]
    first, second = queue.receive(2, 0, 30)
    assert (first.message_id, first.receipt_handle, first.body) == ("m-1", "r-1", "{}")
    assert first.receive_count == 3 and first.sent_timestamp_s == 1_700_000_000.123
    assert second.receive_count == 1 and second.sent_timestamp_s is None


@pytest.mark.parametrize("number", ["\u00b3", "1" * 5000, "9" * 400, "-1", " 7", "1e3", 7.5, None])
def test_a_hostile_number_is_ignored_not_raised(scripted: tuple[SqsQueue, type[Scripted]],
                                               number: Any) -> None:
    queue, handler = scripted
    attributes = {"ApproximateReceiveCount": number, "SentTimestamp": number}
    answer = {"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "Body": "b", "Attributes": attributes}]}
    depth = {"Attributes": {"ApproximateNumberOfMessages": number}}
    handler.script += [(200, {}, json.dumps(answer).encode()), (200, {}, json.dumps(depth).encode())]
    [message] = queue.receive(1, 0, 30)
    assert message.receive_count == 1 and message.sent_timestamp_s is None
    assert queue.approximate_depth() == 0


def test_error_codes_read_as_botocore_reads_them() -> None:
    assert parse_error(400, {}, b'{"__type": "com.amazon.coral.service#ExpiredTokenException"}')[0] == \
        "ExpiredTokenException"
    assert parse_error(400, {"x-amzn-query-error": "ExpiredToken;Sender"},
                       b'{"__type": "a#ExpiredTokenException"}')[0] == "ExpiredToken"
    assert parse_error(400, {}, b'{"code": "x:http://internal/"}')[0] == "x"
    assert parse_error(502, {}, b"\xff\xfe") == ("", "")


@pytest.mark.parametrize("code", ["A" * 201, "Expired Token", "x\nInjected: yes", "\u00e9t\u00e9"])
def test_an_error_code_that_is_no_aws_code_is_dropped(code: str) -> None:
    as_json = json.dumps({"__type": "ns#" + code, "message": "m"}).encode()
    assert parse_error(400, {}, as_json) == ("", "m")
    assert parse_error(400, {}, f"<Code>{code}</Code>".encode())[0] == ""
    assert parse_error(400, {"x-amzn-query-error": code + ";Sender"}, b"")[0] == ""
    error = mapped_error("delete", *parse_error(400, {}, as_json)[:1], 400)
    assert isinstance(error, BadInputError) and code not in str(error) and "HTTP 400" in str(error)


@pytest.mark.parametrize("code", ["RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"])
def test_a_request_timeout_is_transient(code: str) -> None:
    assert isinstance(mapped_error("delete", code, 400), TransportError)


@pytest.mark.parametrize("what", ["status line", "body"])
def test_a_dripping_endpoint_cannot_hold_a_receive_past_its_deadline(what: str) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 400\r\n\r\n"
    every_s = 0.25  # far under the per-read timeout: only the total deadline stops this (100 s+)
    if what == "body":
        peer = HostilePeer(lambda p, conn: (p.send(conn, head), drip(b" " * 400, every_s)(p, conn)))
    else:
        peer = HostilePeer(drip(head + b" " * 400, every_s))
    queue = SqsQueue(make_lease(peer.start().url + "/123456789012/pool"), connect_timeout_s=1.0,
                     extra_read_timeout_s=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"(?i)timed out|deadline"):
            queue.receive(1, 1, 30)  # its deadline: connect + wait + margin = 3 s
        # The deadline ends the read (a socket timeout would not: a byte comes every 0.25 s), so only the
        # deadline can end the call this soon (without it, the drip lasts over 100 s).
        assert time.monotonic() - started < 3.0 + 5.0
        assert peer.sent > 0  # the peer was dripping, not silent
    finally:
        queue.close()
        peer.stop()


def test_a_call_after_close_connects_again(scripted: tuple[SqsQueue, type[Scripted]]) -> None:
    queue, handler = scripted
    assert queue.approximate_depth() == 0
    queue.close()
    assert queue.approximate_depth() == 0  # as a botocore client did after close()
    assert handler.calls == ["AmazonSQS.GetQueueAttributes"] * 2


def test_a_call_that_cannot_be_made_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(sqs_wire.time, "sleep", waits.append)
    queue = SqsQueue(make_lease("http://127.0.0.1:1/123456789012/pool"),
                     proxies={"http": "socks5://127.0.0.1:1"})
    try:
        for _ in range(2):
            with pytest.raises(TransportError, match=r"SQS delete not made: .*socks"):
                queue.delete("handle")
    finally:
        queue.close()
    assert waits == []  # no random wait before a retry that could not differ
