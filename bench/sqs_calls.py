"""The CPU of one SQS call from the poller's side: receive, delete, change of visibility.

Usage (in the project's venv): ``python -m bench.sqs_calls [N] [--profile]``. It starts the
local control plane (its lease-checking gateway in front of moto, on loopback), takes a pool's
lease as the leaser does, and makes N rounds of: send (by the control plane, not measured), a
receive that finds the message, a change of visibility, a delete, and an empty receive with
no wait, each through the executor's own ``SqsQueue`` on warm connections. It prints the median
thread CPU (``time.thread_time``) of each call, which is what the poller's thread pays; the
server's side runs on other threads and is not counted. ``--profile`` adds cProfile's top
functions over the same calls (cumulative; ``--tottime`` sorts by own time), to see where the
client spends it. ``--floor`` adds
the same empty receive as a bare SigV4-signed POST on one kept-alive ``http.client`` connection
(no retries, error mapping or proxies): what a hand-written client could come down to.
"""

from __future__ import annotations

import cProfile
import hashlib
import hmac
import http.client
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from loguru import logger

from executor.datahub.lease import Lease
from executor.local.controlplane.server import ControlPlane
from executor.queue.sqs import SqsQueue

PROFILER: cProfile.Profile | None = None


def _timed(samples: dict[str, list[float]], name: str, call: Callable[[], Any]) -> Any:
    if PROFILER is not None:
        PROFILER.enable()
    began = time.thread_time()
    result = call()
    samples.setdefault(name, []).append((time.thread_time() - began) * 1000)
    if PROFILER is not None:
        PROFILER.disable()
    return result


def _round(queue: SqsQueue, admin: Any, url: str, samples: dict[str, list[float]]) -> None:
    admin.send_message(QueueUrl=url, MessageBody='{"plain": "body"}')
    messages: list[Any] = []
    while not messages:
        messages = _timed(samples, "receive (1 message)", lambda: queue.receive(1, 1, 30))
    handle = messages[0].receipt_handle
    _timed(samples, "change visibility", lambda: queue.extend(handle, 30))
    _timed(samples, "delete", lambda: queue.delete(handle))
    _timed(samples, "receive (empty, no wait)", lambda: queue.receive(1, 0, 30))


def _signed(lease: Lease, host: str, target: str, body: bytes) -> dict[str, str]:
    """SigV4 headers for an SQS JSON call (the floor's only work besides the HTTP itself)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {"content-type": "application/x-amz-json-1.0", "host": host, "x-amz-date": stamp,
               "x-amz-security-token": lease.session_token, "x-amz-target": target}
    names = ";".join(sorted(headers))
    canonical = "\n".join(["POST", "/", "", "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                           names, hashlib.sha256(body).hexdigest()])
    scope = f"{stamp[:8]}/{lease.region}/sqs/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = hmac.digest(("AWS4" + lease.secret_access_key).encode(), stamp[:8].encode(), "sha256")
    for part in (lease.region, "sqs", "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    signature = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={lease.access_key_id}/{scope}, "
                                f"SignedHeaders={names}, Signature={signature}")
    return headers


def _floor(lease: Lease, samples: dict[str, list[float]], rounds: int) -> None:
    parts = urlsplit(lease.queue_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        for n in range(rounds + 20):
            began = time.thread_time()
            body = json.dumps({"QueueUrl": lease.queue_url, "MaxNumberOfMessages": 1, "WaitTimeSeconds": 0,
                               "VisibilityTimeout": 30,
                               "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"]})
            conn.request("POST", "/", body.encode(),
                         _signed(lease, parts.netloc, "AmazonSQS.ReceiveMessage", body.encode()))
            answer = conn.getresponse()
            json.loads(answer.read() or b"{}")
            if answer.status != 200:
                raise RuntimeError(f"the floor's receive failed: HTTP {answer.status}")
            spent_ms = (time.thread_time() - began) * 1000
            if n >= 20:  # after a warm-up
                samples.setdefault("floor: bare signed receive", []).append(spent_ms)
    finally:
        conn.close()


def main(argv: list[str]) -> None:
    logger.remove()  # the control plane's access log would dwarf the figures
    rounds = int(next((a for a in argv if a.isdigit()), "200"))
    with ControlPlane(pools=("default",), lease_seconds=3600).start() as cp:
        import boto3

        admin = boto3.client("sqs", endpoint_url=cp.sqs_endpoint, region_name="us-east-1",
                             aws_access_key_id="admin", aws_secret_access_key="admin")
        url = cp.queue_url("default")
        lease = Lease.from_executor_config(cp.executor_configs()[0])
        queue = SqsQueue(lease)
        try:
            warm: dict[str, list[float]] = {}
            for _ in range(20):
                _round(queue, admin, url, warm)
            samples: dict[str, list[float]] = {}
            global PROFILER
            PROFILER = profiler = cProfile.Profile(time.thread_time) if "--profile" in argv else None
            for _ in range(rounds):
                _round(queue, admin, url, samples)
            if "--floor" in argv:
                _floor(lease, samples, rounds)
        finally:
            queue.close()
    for name, values in samples.items():
        print(f"{name:28s} p50 {statistics.median(values):6.3f} ms CPU  "
              f"mean {statistics.fmean(values):6.3f}  ({len(values)} calls)")
    if profiler is not None:
        out = io.StringIO()
        order = "tottime" if "--tottime" in argv else "cumulative"
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(70)
        print(out.getvalue())


if __name__ == "__main__":
    main(sys.argv[1:])
