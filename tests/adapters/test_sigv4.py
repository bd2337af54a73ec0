"""The SQS calls' SigV4 signer against botocore's: the same Authorization header, byte for byte.

Neither moto nor the control plane's gateway checks signatures, so the signer is compared with
botocore's ``SigV4Auth`` for the same request and instant: directly, and for what the queue
really sent over the wire (captured by a loopback server).
"""

from __future__ import annotations

import calendar
import threading
import time
from datetime import datetime
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from executor.queue.sigv4 import SigV4Signer, canonical_host
from executor.queue.sqs import SqsQueue
from tests.adapters.conftest import make_lease
from tests.fixtures.http_thread import Answering, serving

BODY = '{"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/pool", "ReceiptHandle": "h=="}'
SIGNED_BY_BOTOCORE = ("content-type", "host", "x-amz-date", "x-amz-security-token", "x-amz-target",
                      "x-amzn-query-mode")


def botocore_authorization(url: str, headers: dict[str, str], body: bytes, stamp: str, *,
                           key: str, secret: str, token: str | None, region: str,
                           monkeypatch: pytest.MonkeyPatch) -> str:
    """botocore's Authorization for ``POST url`` with ``headers`` and ``body`` at ``stamp``."""
    at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: at)
    request = AWSRequest("POST", url, dict(headers), body)
    SigV4Auth(Credentials(key, secret, token), "sqs", region).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize(
    ("url", "region", "token"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/", "eu-west-1", "session-token/with+odd=chars"),
        ("https://sqs.cn-north-1.amazonaws.com.cn:443/", "cn-north-1", "t"),
        ("http://127.0.0.1:4566/", "us-east-1", None),
        ("http://[::1]:8080/", "us-east-1", "t"),
        ("http://[::1]:80/", "us-east-1", "t"),
        ("https://SQS.EU-WEST-1.amazonaws.com/", "eu-west-1", "t"),
        ("http://GW.Example.Test:8080/", "eu-west-1", None),
        ("https://gw.example.test:8443/", "ap-southeast-2", "t"),
    ],
)
def test_the_authorization_header_is_botocores(url: str, region: str, token: str | None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"X-Amz-Target": "AmazonSQS.DeleteMessage", "Content-Type": "application/x-amz-json-1.0",
               "x-amzn-query-mode": "true"}
    body = BODY.replace("h==", "h==  ü").encode()
    now = float(calendar.timegm((2026, 3, 1, 23, 59, 59, 0, 0, 0)))
    signer = SigV4Signer("AKIAEXAMPLEKEY00", "made/up+secret", token, region, "sqs", canonical_host(url))
    ours = signer.headers(body, headers, now)
    stamp = ours["X-Amz-Date"]
    assert stamp == "20260301T235959Z"
    theirs = botocore_authorization(url, headers, body, stamp, key="AKIAEXAMPLEKEY00",
                                    secret="made/up+secret", token=token, region=region,
                                    monkeypatch=monkeypatch)
    assert ours["Authorization"] == theirs
    assert ours.get("X-Amz-Security-Token") == token


def test_the_days_key_changes_at_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = SigV4Signer("AKIAEXAMPLEKEY00", "s", "t", "us-east-1", "sqs", "127.0.0.1:1")
    headers = {"X-Amz-Target": "AmazonSQS.ReceiveMessage", "Content-Type": "application/x-amz-json-1.0"}
    for now in (1_700_000_000.0, 1_700_000_000.0 + 86_400):  # the second call derives a new key
        ours = signer.headers(b"{}", headers, now)
        theirs = botocore_authorization("http://127.0.0.1:1/", headers, b"{}", ours["X-Amz-Date"],
                                        key="AKIAEXAMPLEKEY00", secret="s", token="t",
                                        region="us-east-1", monkeypatch=monkeypatch)
        assert ours["Authorization"] == theirs


class _Capturing(Answering):
    """Records each request's headers and body; answers an empty receive."""

    seen: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.answer(b"{}", headers={"Content-Type": "application/x-amz-json-1.0"})


def test_what_the_queue_sends_is_signed_as_botocore_signs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[dict[str, str], bytes]] = []
    handler: Any = type("Handler", (_Capturing,), {"seen": seen})
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler), "sigv4-capture") as server:
        port = server.server_address[1]
        queue = SqsQueue(make_lease(f"http://127.0.0.1:{port}/123456789012/pool"))
        try:
            assert queue.receive(1, 0, 30) == []
        finally:
            queue.close()
    [(headers, body)] = seen
    assert headers["x-amz-target"] == "AmazonSQS.ReceiveMessage"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    signed = {name: headers[name] for name in SIGNED_BY_BOTOCORE if name != "host"}
    theirs = botocore_authorization(f"http://127.0.0.1:{port}/", signed, body, headers["x-amz-date"],
                                    key="AKIATESTLEASE", secret="lease-secret-key-value",
                                    token="lease-session-token-value", region="us-east-1",
                                    monkeypatch=monkeypatch)
    assert headers["authorization"] == theirs
    assert headers["host"] == f"127.0.0.1:{port}"
    assert abs(calendar.timegm(time.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")) - time.time()) < 300
    assert not [t for t in threading.enumerate() if t.name == "sigv4-capture"]
