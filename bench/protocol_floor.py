"""The protocol's own price: the least CPU a runner of DataHub's executor protocol pays per task.

The bench's "executor CPU per task" row compares the executor with Celery's worker, which
receives a message, spawns the CLI and deletes the message; the executor's protocol also reads
the request from GMS, fetches its secret, reports RUNNING and the result, and must not lose a
result it has not delivered. This child serves one pool with the bare minimum of all that, in
one loop on one thread, with no framework: per message a SigV4-signed receive on one kept-alive
connection (to the lease's queue URL: the bench gives moto's, as Celery's workers talk to
moto directly and a real executor to AWS SQS with no gateway between; one message per receive,
deleted on its own, where Celery's workers batch their acknowledgements), the input aspect's batch
read, a work dir, the stand-in spawned, the secret's GraphQL read and the envelope on its stdin,
RUNNING (the GMS calls on one kept-alive connection), its output read to EOF, the result written
durably (temp file, fsync, rename, the directory's fsync: a result must survive a crash of the
host before it is delivered), the result sent, the message deleted, the record and the work dir
removed; beside it, on a thread of its own, the presence record every 30 s. No limits,
masking, cgroup, retries, log file, KILL reads or actors. With ``sandbox``
in its config each run goes through ``bench.sandbox_floor`` instead of the bare ``Popen``: the
same loop plus the least the mission's sandbox costs (work dir, scrubbed environment, task
cgroup, rlimits, the tree sampled, the output masked into a kept task log). Its process CPU per
task (measured from outside, as the executor's) is the line under which no executor of this
protocol goes here, so the executor's own figure is read against it; likewise its pickup (from
the SQS send to the stand-in's first line), which reads the request's input before it can spawn.

Usage (by the bench): ``python -m bench.protocol_floor`` with a JSON object on stdin (``gms``,
``token``, ``lease``: a ``listExecutorConfigs`` entry, ``standin``, ``root``, optionally
``sandbox``: true); it prints
``ready`` and serves until it is terminated.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from loguru import logger

from bench.sandbox_floor import BareRun, BareSandbox
from executor.datahub import aspects
from executor.datahub.envelope import decode_message
from executor.datahub.lease import Lease
from executor.local.controlplane.upstream import NoDelayConnection
from executor.queue.sigv4 import SigV4Signer, canonical_host

ENTITY = "dataHubExecutionRequest"
PRESENCE_S = 30.0
"""The protocol's presence interval (``DATAHUB_EXECUTOR_DISCOVERY_INTERVAL``), the executor's."""
SECRET_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
SECRETS_QUERY = ("query getSecretValues($input: GetSecretValuesInput!) "
                 "{ getSecretValues(input: $input) { name value } }")


class Gms:
    """One kept-alive connection to GMS; JSON in, JSON out, no error handling beyond a status check.
    Answers' heads are read by the project's strict reader (``NoDelayConnection``), not ``email``."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.conn = NoDelayConnection(parts.hostname or "", parts.port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes) -> bytes:
        """One call; a kept-alive connection the server closed while idle (the bench's minute at
        rest) is opened again once, as any client of a real GMS must."""
        try:
            self.conn.request("POST", path, body, self.headers)
            answer = self.conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn.request("POST", path, body, self.headers)
            answer = self.conn.getresponse()
        content = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GMS answered {answer.status} to {path}")
        return content

    def aspect(self, urn: str, name: str) -> dict[str, Any]:
        body = json.dumps({"urns": [urn], "aspectNames": [name]}).encode()
        entity = json.loads(self.post(f"/openapi/v2/entity/batch/{ENTITY}", body))["entities"][0]
        return dict((entity.get("aspects") or entity)[name]["value"])

    def secrets(self, names: list[str]) -> dict[str, str]:
        body = json.dumps({"query": SECRETS_QUERY, "variables": {"input": {"secrets": names}}}).encode()
        found = json.loads(self.post("/api/graphql", body))["data"]["getSecretValues"] or []
        return {item["name"]: item["value"] for item in found}

    def write(self, urn: str, name: str, value: dict[str, Any], entity: str = ENTITY) -> None:
        proposal = {
            "entityType": entity, "entityUrn": urn, "changeType": "UPSERT", "aspectName": name,
            "aspect": {"contentType": "application/json", "value": json.dumps(value)},
        }
        body = json.dumps({"proposal": proposal, "async": "false"}).encode()
        self.post("/aspects?action=ingestProposal", body)


class Sqs:
    """The pool's queue through one kept-alive connection, each call signed with the lease (the
    executor's own signer: a few HMACs, no client machinery)."""

    def __init__(self, lease: Lease) -> None:
        self.lease, self.parts = lease, urlsplit(lease.queue_url)
        self.signer = SigV4Signer(lease.access_key_id, lease.secret_access_key, lease.session_token,
                                  lease.region, "sqs", canonical_host(lease.queue_url))
        self.conn = NoDelayConnection(self.parts.hostname or "", self.parts.port, timeout=30)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"QueueUrl": self.lease.queue_url, **params}).encode()
        wanted = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{operation}"}
        self.conn.request("POST", "/", body, self.signer.headers(body, wanted))
        answer = self.conn.getresponse()
        content = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"SQS answered {answer.status} to {operation}")
        return dict(json.loads(content or b"{}"))

    def close(self) -> None:
        self.conn.close()


def durable_write(directory: str, name: str, data: bytes) -> str:
    """The result on disk before it is sent: the least the executor's outbox promises."""
    path, temp = os.path.join(directory, name), os.path.join(directory, f".{name}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


class PlainRun:
    """The protocol's bare spawn: a ``Popen`` in a plain work dir, its output read to EOF."""

    def __init__(self, root: str, key: str, argv: list[str]) -> None:
        self.work = os.path.join(root, "work", key)
        os.makedirs(self.work)
        self.proc = subprocess.Popen(argv, cwd=self.work, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     env={"PATH": os.environ.get("PATH", ""), "HOME": self.work})

    def feed(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.close()

    def drain(self, _secrets: Iterable[str]) -> tuple[int, bytes]:
        assert self.proc.stdout is not None
        output = self.proc.stdout.read()
        self.proc.stdout.close()
        status = self.proc.wait()
        shutil.rmtree(self.work)
        return status, output


class Run(Protocol):
    """What ``begin`` needs of a run it spawned: its stdin."""

    def feed(self, data: bytes) -> None: ...


R = TypeVar("R", bound=Run)


@dataclass
class Begun(Generic[R]):
    """A task under way: its request, when it began, its run, its secrets' values."""

    urn: str
    receipt: str
    started_ms: int
    run: R
    secrets: list[str]


def begin(gms: Gms, message: dict[str, Any], standin: str, spawn: Callable[[str, list[str]], R]) -> Begun[R]:
    """A task's start in the executor's order: the input read, the run spawned (``spawn(key,
    argv)``: the CLI starts while its secrets are read), the secrets on its stdin, RUNNING."""
    urn = decode_message(message["Body"]).urn
    started = int(time.time() * 1000)
    recipe = json.loads(gms.aspect(urn, aspects.INPUT_ASPECT)["args"]["recipe"])
    recipe["run_id"] = urn  # as the executor names the run in the recipe
    run = spawn(urn.rsplit(":", 1)[-1], [standin, "ingest", "run", "-c", "-"])
    text = json.dumps(recipe)
    values = gms.secrets(sorted(set(SECRET_REFERENCE.findall(text))))
    run.feed(json.dumps({"__recipe_yaml__": text, "__secrets__": values}).encode())
    gms.write(urn, aspects.RESULT_ASPECT,
              {"status": "RUNNING", "startTimeMs": started, "durationMs": 0, "report": "Starting."})
    return Begun(urn, message["ReceiptHandle"], started, run, list(values.values()))


def deliver(gms: Gms, sqs: Sqs, root: str, task: Begun[Any], code: int, output: bytes) -> None:
    """A task's end: the result written durably, sent, the message deleted, the record removed."""
    result = {"status": "SUCCESS" if code == 0 else "FAILURE", "startTimeMs": task.started_ms,
              "durationMs": int(time.time() * 1000) - task.started_ms,
              "report": output.decode("utf-8", "replace")}
    record = durable_write(os.path.join(root, "outbox"), f"{task.urn.rsplit(':', 1)[-1]}.json",
                           json.dumps({"urn": task.urn, "result": result}).encode())
    gms.write(task.urn, aspects.RESULT_ASPECT, result)
    sqs.call("DeleteMessage", {"ReceiptHandle": task.receipt})
    os.unlink(record)


def run_one(gms: Gms, sqs: Sqs, message: dict[str, Any], standin: str, root: str,
            box: BareSandbox | None) -> None:
    """One task in the executor's order (``begin``), its output read to EOF, then ``deliver``.
    With ``box`` the run goes through the bare sandbox (``bench.sandbox_floor``), else through a
    bare ``Popen``."""
    def spawn(key: str, argv: list[str]) -> PlainRun | BareRun:
        return PlainRun(root, key, argv) if box is None else box.start(key, argv)

    task = begin(gms, message, standin, spawn)
    code, output = task.run.drain(task.secrets)
    deliver(gms, sqs, root, task, code, output)


def report_presence(url: str, token: str, pool_id: str) -> None:
    """The presence record at start and every ``PRESENCE_S`` (the protocol's, as the executor's
    pools send it), on a thread and a connection of its own: the least a runner of the protocol
    wakes for at rest besides its long poll (the bench's idle rows)."""
    gms, started = Gms(url, token), time.time()
    urn = f"urn:li:{aspects.REMOTE_EXECUTOR_ENTITY}:floor-{pool_id}"
    while True:
        value = aspects.presence_aspect(pool_id=pool_id, version="floor", hostname=socket.gethostname(),
                                        uptime_s=time.time() - started)
        try:
            gms.write(urn, aspects.PRESENCE_ASPECT, value, aspects.REMOTE_EXECUTOR_ENTITY)
        except Exception as exc:  # the next one tries again, as the executor's reporter does
            print(f"protocol floor: presence not written: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            gms = Gms(url, token)
        time.sleep(PRESENCE_S)


def child_start() -> tuple[dict[str, Any], Gms, Sqs]:
    """A floor child's start: its config from stdin, SIGTERM to exit, its presence record on a
    thread of its own, its outbox directory, warnings only; its config and its two connections."""
    config = json.loads(sys.stdin.read())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    presence = (config["gms"], config["token"], config["lease"]["executorId"])
    threading.Thread(target=report_presence, args=presence, name="presence", daemon=True).start()
    os.makedirs(os.path.join(config["root"], "outbox"), exist_ok=True)
    logger.remove()  # the executor's parts log at DEBUG; only what goes wrong is wanted here
    logger.add(sys.stderr, level="WARNING")
    return config, Gms(config["gms"], config["token"]), Sqs(Lease.from_executor_config(config["lease"]))


def main() -> None:
    config, gms, sqs = child_start()
    box = BareSandbox(Path(config["root"])) if config.get("sandbox") else None
    print("ready", flush=True)
    try:
        serve(gms, sqs, config["standin"], config["root"], box)
    finally:
        if box is not None:
            box.close()


def serve(gms: Gms, sqs: Sqs, standin: str, root: str, box: BareSandbox | None) -> None:
    """Receive and run, one message at a time, until terminated."""
    while True:
        answer = sqs.call("ReceiveMessage", {"MaxNumberOfMessages": 1, "WaitTimeSeconds": 20,
                                             "VisibilityTimeout": 60})
        for message in answer.get("Messages", []):
            try:
                run_one(gms, sqs, message, standin, root, box)
            except Exception as exc:  # say why, rather than a bench waiting on a dead child
                print(f"protocol floor: a task failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
