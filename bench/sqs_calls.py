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
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from bench.protocol_floor import Sqs
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


def _floor(lease: Lease, samples: dict[str, list[float]], rounds: int) -> None:
    """The same empty receive, bare (``bench.protocol_floor.Sqs``): signed, one kept-alive
    ``http.client`` connection, no retries, error mapping, proxies or caps."""
    queue = Sqs(lease)
    params = {"MaxNumberOfMessages": 1, "WaitTimeSeconds": 0, "VisibilityTimeout": 30,
              "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"]}
    try:
        for n in range(rounds + 20):
            began = time.thread_time()
            queue.call("ReceiveMessage", params)
            spent_ms = (time.thread_time() - began) * 1000
            if n >= 20:  # after a warm-up
                samples.setdefault("floor: bare signed receive", []).append(spent_ms)
    finally:
        queue.close()


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
