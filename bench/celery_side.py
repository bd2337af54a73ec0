"""The anchor: a Celery 5 worker on the same moto SQS server, running the same stand-in CLI.

Runs in ``bench/.venv-celery`` (Celery and kombu's SQS transport), never in the project's venv.
Two roles, chosen by ``argv[1]``:

``worker``  (through ``celery -A bench.celery_side worker``) the task ``run_recipe`` spawns the
            stand-in with the envelope on stdin, reads its output line by line, waits for it and
            stamps ``<tag>.done``, as DataHub's own Celery-based executor runs the CLI;
``client``  reads JSON commands on stdin (``{"count": n, "config": {...}}``), sends that many
            tasks, and answers each command with one JSON line ``[[tag, sent_at], ...]``.

Settings come from the environment: ``BENCH_BROKER_URL`` (``sqs://...@127.0.0.1:PORT``),
``BENCH_STANDIN`` (the stand-in's path), ``BENCH_STAMPS`` (the stamps directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from celery import Celery

from bench.wire_stamps import stamp_sends

QUEUE = "bench-celery"
app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "memory://"))
app.conf.update(
    broker_transport_options={
        "region": "us-east-1",
        "is_secure": False,
        "wait_time_seconds": 5,
        "polling_interval": 0,
        "visibility_timeout": 300,
    },
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
    task_acks_late=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.run_recipe")
def run_recipe(envelope: str, tag: str) -> int:
    """Run the stand-in with ``envelope`` on stdin; stamp ``<tag>.done`` once it has exited."""
    proc = subprocess.Popen(
        [os.environ["BENCH_STANDIN"], "ingest", "run", "-c", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(envelope.encode())
    proc.stdin.close()
    for _line in proc.stdout:
        pass
    code = proc.wait()
    path = os.path.join(os.environ["BENCH_STAMPS"], f"{tag}.done")
    with open(path, "w") as handle:
        json.dump({"t": time.time(), "code": code}, handle)
    return code


def envelope_for(tag: str, config: dict[str, object]) -> str:
    """The stdin envelope the stand-in reads (the same the executor sends)."""
    recipe = {
        "source": {
            "type": "benchsim",
            "config": {"stamps": os.environ["BENCH_STAMPS"], "tag": tag, **config},
        },
        "sink": {"type": "console"},
    }
    return json.dumps({"__recipe_yaml__": json.dumps(recipe), "__secrets__": {}})


_ON_THE_WIRE: list[float] = []
"""Wall clock of each ``SendMessage`` just before botocore writes it (``wire_stamps``)."""


def client() -> int:
    """Answer each command line with the tags sent and when: each message as it left (the
    executor's pickups start where the control plane's ``SendMessage`` leaves; the producer's own
    work before that, 1.5-1.8 ms here, is no part of the worker's pickup)."""
    stamp_sends(_ON_THE_WIRE)
    run_recipe.apply_async(args=(envelope_for("warm-" + uuid.uuid4().hex, {}), "warm"))  # connect
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        sent = []
        for _ in range(int(command["count"])):
            tag = "celery-" + uuid.uuid4().hex[:12]
            envelope = envelope_for(tag, command.get("config", {}))
            _ON_THE_WIRE.clear()
            run_recipe.apply_async(args=(envelope, tag), queue=command.get("queue", QUEUE))
            if not _ON_THE_WIRE:
                raise RuntimeError("the task's SendMessage was not seen leaving")
            sent.append([tag, _ON_THE_WIRE[-1]])  # a retried send left with its last attempt
        print(json.dumps(sent), flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["client"]:
    sys.exit(client())
