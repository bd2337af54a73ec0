"""The control plane's CPU per task by request kind, in the 4-worker throughput row's batches.

Usage (in the project's venv, under ``flock`` like the bench): ``python -m bench.cp_calls
[BATCHES] [celery]``. It starts the local control plane and a 4-worker executor (``prefetch: 4``,
its pool leasing moto's queue URL, as ``bench.suite``'s), runs BATCHES batches of 20 trivial
stand-in tasks, each after one untimed task (as the row), and prints for each kind of request
the control plane served during the batches (GMS by path or GraphQL operation, moto by SQS
action) how many a task made and the CPU each cost: the thread CPU of the server thread that
handled it (``time.thread_time`` around ``handle_one_request``), which is what the row's
"control plane CPU per task" sums, less the server's rate at rest. ``celery`` adds the same
for Celery's prefork worker (concurrency 4) on the same moto (``bench/.venv-celery``).
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from loguru import logger

from bench import cost_rows
from bench.world import ROOT, World, wait_for
from executor.local.controlplane import gms_http, moto_server

BATCH = 20
Tally = dict[str, list[float]]


class Counting:
    """Thread CPU per request kind, while ``on``; wraps the servers' request handling."""

    def __init__(self) -> None:
        self.on = False
        self.tally: Tally = collections.defaultdict(lambda: [0, 0.0])
        self._lock = threading.Lock()

    def install(self) -> None:
        handle = BaseHTTPRequestHandler.handle_one_request
        counting = self

        def timed(handler: Any) -> None:
            began = time.thread_time()
            handle(handler)
            kind = getattr(handler, "bench_kind", None)
            if kind is not None and counting.on:
                counting.add(kind, time.thread_time() - began)
            handler.bench_kind = None

        BaseHTTPRequestHandler.handle_one_request = timed  # type: ignore[method-assign]
        _name(gms_http.GmsHandler, "_dispatch", _gms_kind)
        _name(moto_server.WsgiHandler, "_serve", _moto_kind)

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            entry = self.tally[kind]
            entry[0] += 1
            entry[1] += seconds


def _moto_kind(handler: Any) -> str:
    return "moto " + str(handler.headers.get("X-Amz-Target", handler.path))


def _gms_kind(_handler: Any, method: str, path: str, params: dict[str, list[str]], _raw: str,
              body: bytes) -> str:
    if path == "/api/graphql":
        query = " ".join(str(json.loads(body).get("query", "")).split())
        return "gms graphql " + query.split("(")[0][:60]
    action = (params.get("action") or [""])[0]
    return f"gms {method} {path.split('/urn')[0][:50]}" + (f"?action={action}" if action else "")


def _name(cls: type, method: str, kind: Callable[..., str]) -> None:
    """Wrap ``cls.method`` so the handler carries its request's kind."""
    original = getattr(cls, method)

    def named(handler: Any, *args: Any) -> Any:
        handler.bench_kind = kind(handler, *args)
        return original(handler, *args)

    setattr(cls, method, named)


def show(title: str, tally: Tally, tasks: int, server_ms: float) -> None:
    print(f"{title}: control plane {server_ms:.2f} ms of CPU per task (rest taken out)")
    print(f"  {'request kind':72s} {'per task':>8s} {'ms each':>8s} {'ms/task':>8s}")
    for kind, (count, seconds) in sorted(tally.items(), key=lambda kv: -kv[1][1]):
        each, per_task = seconds / count * 1e3, seconds / tasks * 1e3
        print(f"  {kind[:72]:72s} {count / tasks:8.2f} {each:8.3f} {per_task:8.3f}")


def executor_batches(world: World, counting: Counting, batches: int, rest: float) -> None:
    child = world.executor([{"id": "four", "max_workers": 4, "prefetch": 4}])
    source = world.source("four", {"mode": "trivial"})
    for _ in range(3):
        world.wait_result(world.submit(source)[0])
    server = 0.0
    for _ in range(batches):
        world.wait_result(world.submit(source)[0])
        counting.on, began, at = True, cost_rows.server_cpu([]), time.monotonic()
        urns = [world.submit(source)[0] for _ in range(BATCH)]
        for urn in urns:
            world.wait_result(urn)
        server += cost_rows.server_cpu([]) - began - rest * (time.monotonic() - at)
        counting.on = False
    show("executor, 4 workers", counting.tally, batches * BATCH, server / (batches * BATCH) * 1e3)
    child.stop()


def celery_batches(world: World, counting: Counting, batches: int, rest: float, tmp: Path) -> None:
    from bench.anchor import CeleryAnchor

    standin = world.venv_root / "benchsim-bundled" / "bin" / "datahub"
    python = str(ROOT / "bench" / ".venv-celery" / "bin" / "python")
    celery = CeleryAnchor(python, world.cp.sqs_endpoint, world.stamps, standin, tmp)
    try:
        celery.start_worker("four", "bench-four", ["--concurrency=4"])
        counting.tally.clear()
        server = 0.0
        for round_ in range(batches + 1):
            counting.on, began, at = round_ > 0, cost_rows.server_cpu([]), time.monotonic()
            sent = celery.send(BATCH, "bench-four")
            for tag, _ in sent:
                wait_for(lambda t=tag: celery.done(t), 120, f"celery {tag} done", 0.01)
            if round_ > 0:
                server += cost_rows.server_cpu([]) - began - rest * (time.monotonic() - at)
            counting.on = False
        show("celery, prefork 4", counting.tally, batches * BATCH, server / (batches * BATCH) * 1e3)
    finally:
        celery.close()


def main(argv: list[str]) -> None:
    batches = int(argv[0]) if argv and argv[0].isdigit() else 8
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    counting = Counting()
    counting.install()
    with tempfile.TemporaryDirectory(prefix="cp-calls-") as tmp:
        world = World(Path(tmp), ("four",), direct=["four"])
        try:
            rest = cost_rows.server_rest_rate([], 3.0)
            executor_batches(world, counting, batches, rest)
            if "celery" in argv:
                celery_batches(world, counting, batches, rest, Path(tmp))
        finally:
            world.close()


if __name__ == "__main__":
    main(sys.argv[1:])
