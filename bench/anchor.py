"""The sides the executor is compared with: Celery workers (in their own venv) and the floor.

``CeleryAnchor`` starts Celery workers (``celery_side`` in ``bench/.venv-celery``) on an SQS
server (moto directly, or fauxqs for the throughput rows that moto's deep-queue slowness would
cap) and a long-lived client that sends tasks on command. ``Fauxqs`` runs that server. ``Floor``
is the least any executor can do: one SQS long poll on moto, then a bare ``Popen`` of the same
stand-in with the envelope on stdin, output read (for the output rows also written to a file
beside the executor's task logs) and the child reaped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import psutil

from bench.drain import Drainer
from bench.world import ROOT, SECRET_VALUE, read_stamp, stop_child, wait_for
from executor.sandbox.spec import SandboxSpec

REGION = "us-east-1"


class CeleryAnchor:
    """Celery workers by name (``solo``: one process; ``four``: prefork, concurrency 4)."""

    def __init__(self, python: str, moto_endpoint: str, stamps: Path, standin: Path, tmp: Path) -> None:
        host_port = moto_endpoint.split("://", 1)[1]
        self.env = dict(
            os.environ,
            BENCH_BROKER_URL=f"sqs://bench:bench@{host_port}",
            BENCH_STAMPS=str(stamps),
            BENCH_STANDIN=str(standin),
            PYTHONPATH=str(ROOT),
            AWS_DEFAULT_REGION=REGION,
        )
        self.python = python
        self.stamps = stamps
        self.tmp = tmp
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.client = subprocess.Popen(
            [python, "-m", "bench.celery_side", "client"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.client.stdout is not None
        json.loads(self.client.stdout.readline())

    def start_worker(self, name: str, queue: str, options: list[str]) -> psutil.Process:
        log = open(self.tmp / f"celery-{name}.log", "wb")  # noqa: SIM115 (closed with the worker)
        proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "celery",
                "-A",
                "bench.celery_side",
                "worker",
                "-Q",
                queue,
                "-n",
                f"{name}@bench",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
                *options,
            ],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.workers[name] = proc
        return psutil.Process(proc.pid)

    def send(self, count: int, queue: str, config: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """Send ``count`` tasks; their tags and send times."""
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(json.dumps({"count": count, "queue": queue, "config": config or {}}) + "\n")
        self.client.stdin.flush()
        return [(tag, at) for tag, at in json.loads(self.client.stdout.readline())]

    def done(self, tag: str) -> dict[str, float] | None:
        return read_stamp(self.stamps, f"{tag}.done")

    def close(self) -> None:
        if self.client.stdin is not None:
            self.client.stdin.close()
        for proc in [self.client, *self.workers.values()]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [self.client, *self.workers.values()]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Fauxqs:
    """fauxqs (npm) on a loopback port, stopped by closing its stdin."""

    def __init__(self, package_dir: Path) -> None:
        node = shutil.which("node") or "node"
        script = Path(__file__).with_name("fauxqs_loopback.mjs")
        self.proc = subprocess.Popen(
            [node, str(script), str(package_dir.parent.parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Floor:
    """SQS long poll on moto + bare spawn of the stand-in: the least a queue-driven runner costs."""

    def __init__(self, moto_endpoint: str, stamps: Path, standin: Path) -> None:
        self.sqs = boto3.session.Session().client(
            "sqs",
            endpoint_url=moto_endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self.url = self.sqs.create_queue(QueueName="bench-floor")["QueueUrl"]
        self._on_the_wire: list[float] = []
        """When each ``SendMessage`` left (botocore's ``before-send``), as the executor's and
        Celery's sends are stamped: boto3's own work before it is no part of the pickup."""
        self.sqs.meta.events.register("before-send.sqs.SendMessage", self._stamp_send)
        self.stamps = stamps
        self.standin = standin
        self._stop = threading.Event()
        self.cpu_at_start: list[float] = []
        self.reaped: dict[str, float] = {}
        """Tag -> wall clock just after the bare parent reaped that run's stand-in."""
        self._drainer: Drainer | None = None
        """The output rows' reader, started at their first flood."""
        self._thread = threading.Thread(target=self._loop, name="bench-floor", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        """The thread that long-polls the floor's queue (its CPU is the bench's, not a server's)."""
        return self._thread

    def _loop(self) -> None:
        while not self._stop.is_set():
            answer = self.sqs.receive_message(QueueUrl=self.url, WaitTimeSeconds=1, MaxNumberOfMessages=1)
            for message in answer.get("Messages", []):
                self.run(message["Body"])
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def run(self, envelope: str, log: Path | None = None, drain: bool = False) -> None:
        """Spawn the stand-in, feed it, drain its output, reap it; with ``drain``, its output goes
        to the drain process (``bench.drain``: the output rows' floors), with ``log`` into that
        file up to the executor's cap on a task log."""
        proc = subprocess.Popen(
            [str(self.standin), "ingest", "run", "-c", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        def feed() -> None:
            stdin.write(envelope.encode())
            stdin.close()

        if drain or log is not None:
            if self._drainer is None:
                self._drainer = Drainer(str(ROOT))
            self._drainer.drain(os.dup(proc.stdout.fileno()), feed, str(log) if log else None, LOG_MAX_BYTES)
            proc.stdout.close()
        else:
            feed()
            while proc.stdout.read(1 << 20):
                pass
        proc.wait()
        self.reaped[_tag_of(envelope)] = time.time()

    def envelope(self, tag: str, config: dict[str, Any] | None = None) -> str:
        recipe = {
            "source": {
                "type": "benchsim",
                "config": {"stamps": str(self.stamps), "tag": tag, **(config or {})},
            },
            "sink": {"type": "console"},
        }
        return json.dumps({"__recipe_yaml__": json.dumps(recipe), "__secrets__": {"S": SECRET_VALUE}})

    def _stamp_send(self, **_event: Any) -> None:
        self._on_the_wire.append(time.time())

    def pickup(self, tag: str) -> float:
        """Send one message; ms from the moment it left to the stand-in's first line."""
        body = self.envelope(tag)
        self._on_the_wire.clear()
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)
        sent = self._on_the_wire[-1]  # a retried send left with its last attempt
        stamp = wait_for(lambda: read_stamp(self.stamps, f"{tag}.start"), 60, f"floor run {tag}")
        return (float(stamp["t"]) - sent) * 1000

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sqs.close()
        if self._drainer is not None:
            self._drainer.close()


def _tag_of(envelope: str) -> str:
    """The tag a floor envelope's recipe carries (``Floor.envelope``)."""
    recipe = json.loads(json.loads(envelope)["__recipe_yaml__"])
    return str(recipe["source"]["config"].get("tag", ""))


LOG_MAX_BYTES: int = SandboxSpec.log_max_bytes
"""What the executor keeps of a task's log in its file (then it only counts lines): the floor
that writes the log writes as much, not the whole of a longer flood."""


class ProtocolFloor:
    """``bench.protocol_floor`` as a child serving its own pool: the protocol's bare price, with
    ``sandbox`` the protocol's and the sandbox's (``bench.sandbox_floor``)."""

    def __init__(self, gms_url: str, token: str, lease: dict[str, Any], standin: Path, root: Path,
                 sandbox: bool = False, command: Sequence[str] = ("-m", "bench.protocol_floor"),
                 extra: dict[str, Any] | None = None) -> None:
        """``command``: the floor's module (``bench.sleep_floor`` for the sleeping row); ``extra``:
        more of its config (the sleeping floor's periods)."""
        config = {"gms": gms_url, "token": token, "lease": lease, "standin": str(standin), "root": str(root),
                  "sandbox": sandbox, **(extra or {})}
        self.proc = subprocess.Popen([sys.executable, *command], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(config))
        self.proc.stdin.close()
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the protocol floor did not start")
        self.ps = psutil.Process(self.proc.pid)

    def close(self) -> None:
        stop_child(self.proc, 10.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
