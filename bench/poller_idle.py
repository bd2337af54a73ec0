"""The CPU of idle pollers, side by side: one per long-poll wait, in one process, one window.

Usage (in the project's venv): ``python -m bench.poller_idle [SECONDS] [WAIT ...]`` (default 120 s,
waits 5 and 20). Each wait gets a real QueuePoller with a real ``SqsQueue`` on its own empty queue
of a moto server on loopback, a lease and one free slot, so it long-polls as an idle pool's
poller does (beats and its housekeeping included: since session 19 one safety-net timer a
minute, the rest after each receive). After a warm-up it
reads every poller thread's CPU from ``/proc/self/task/<tid>/schedstat`` (ns) over the window
and prints it as a share of one core. The pollers run at the same time, so the machine's load
hits them alike. The timer thread is shared and not counted; the siblings are stand-ins.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from loguru import logger
from moto.server import ThreadedMotoServer

from executor.config import ExecutorConfig
from executor.pool.context import PoolContext
from executor.pool.messages import LEASER, RUNNER, Capacity, LeaseGranted
from executor.pool.poller import QueuePoller
from executor.supervision import ChildContext, Directory
from executor.supervision.threadnames import comm_of
from tests.adapters.conftest import make_lease
from tests.unit.test_poller_extensions import Inbox
from tests.unit.test_poller_stop import Beats


def _thread_ns(name: str) -> int:
    """The on-CPU ns of this process's one thread called ``name`` (kernel ``comm``); an error if
    there is not exactly one (a renamed or shared thread would otherwise read as 0 %)."""
    found = [int((task / "schedstat").read_text().split()[0])
             for task in Path("/proc/self/task").iterdir() if (task / "comm").read_text().strip() == name]
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} threads called {name!r}, not one: the figure would be wrong")
    return found[0]


def _poller(endpoint: str, wait_s: int, state: Path) -> tuple[Any, list[Any]]:
    admin = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id="admin", aws_secret_access_key="admin")
    url = admin.create_queue(QueueName=f"idle-{wait_s}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    pool_id = f"wait{wait_s}"
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(state / pool_id),
        "pools": [{"id": pool_id, "visibility_s": 60, "poll_wait_s": wait_s}],
    })
    pool = PoolContext(config=config, pool=config.pools[0], token="t", instance_id="bench",
                       health=Beats())
    directory = Directory()
    siblings = [Inbox.start(), Inbox.start()]
    directory.put(LEASER, siblings[0])
    directory.put(RUNNER, siblings[1])
    ref = QueuePoller.start(ChildContext("poller", f"root/pool:{pool_id}/poller", 1, None, directory), pool)
    ref.tell(LeaseGranted(make_lease(url, pool_id=pool_id)))
    ref.tell(Capacity())
    return ref, siblings


def main(argv: list[str]) -> None:
    logger.remove()
    window = float(argv[0]) if argv else 120.0
    waits = [int(a) for a in argv[1:]] or [5, 20]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    started: list[tuple[Any, list[Any]]] = []
    try:
        with tempfile.TemporaryDirectory() as state:
            started = [_poller(f"http://{host}:{port}", w, Path(state)) for w in waits]
            threading.Event().wait(25)  # warm-up: leases, first receives, timers armed
            names = [comm_of(f"root/pool:wait{w}/poller") for w in waits]
            before = [_thread_ns(n) for n in names]
            began = time.monotonic()
            threading.Event().wait(window)
            spent = time.monotonic() - began
            after = [_thread_ns(n) for n in names]
            for wait, b, a in zip(waits, before, after):
                print(f"poll_wait_s {wait:2d}: poller thread {(a - b) / 1e9 / spent * 100:.4f} % of a core "
                      f"({(a - b) / 1e6:.1f} ms in {spent:.0f} s)")
    finally:
        for ref, siblings in started:
            ref.stop(block=True, timeout=10)
            for sibling in siblings:
                sibling.stop(block=True, timeout=10)
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
