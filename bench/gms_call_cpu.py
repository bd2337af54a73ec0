"""The client CPU of one GMS call: ``GmsClient`` against the project's control plane on loopback.

Not a bench row: a unit-level measure of the GMS client (``docs/performance-log.md``, "CPU per
task"). The control plane runs in a child process (so it takes no share of this process's
GIL), and only the calling thread's CPU (``thread_time``) is counted. Each call kind runs ``--calls``
times on one kept-alive connection after a warm-up; the figure is the median of five rounds.
Run it with the project's venv from the repository root: ``python bench/gms_call_cpu.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from executor.datahub import aspects
from executor.datahub.gms import GmsClient

ROUNDS = 5
SERVER = r"""
import json, sys, tempfile
from loguru import logger
from executor.local.controlplane.server import ControlPlane
logger.remove()
with tempfile.TemporaryDirectory() as state:
    cp = ControlPlane(pools=("default",), state_dir=state).start()
    print(json.dumps({"url": cp.gms_url, "token": cp.token}), flush=True)
    sys.stdin.read()
    cp.stop()
"""


def per_call_ms(call: Callable[[], object], calls: int) -> float:
    """Median over ``ROUNDS`` of the calling thread's CPU per call, in ms."""
    call()
    rounds = []
    for _ in range(ROUNDS):
        began = time.thread_time()
        for _ in range(calls):
            call()
        rounds.append((time.thread_time() - began) / calls * 1e3)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per round (default 100)")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        with GmsClient(where["url"], where["token"], timeout_s=5.0) as gms:
            measure_calls(gms, args.calls)
    finally:
        server.communicate("")


def measure_calls(gms: GmsClient, calls: int) -> None:
    """Print the client CPU per call of the calls a task makes."""
    gms.graphql('mutation { createSecret(input: {name: "S", value: "v"}) }')
    urn = "urn:li:dataHubExecutionRequest:bench"
    value = aspects.result_aspect("RUNNING", 1, 0, "x" * 200, None, "RUN_INGEST", None)
    kinds: dict[str, Callable[[], object]] = {
        "health (GET)": gms.health,
        "secret read (GraphQL)": lambda: gms.get_secret_values(["S"]),
        "batch read (OpenAPI)": lambda: gms.batch_get_aspects(
            aspects.EXECUTION_REQUEST_ENTITY, [urn], [aspects.INPUT_ASPECT]),
        "RUNNING write (ingestProposal)": lambda: gms.ingest_proposal(
            aspects.EXECUTION_REQUEST_ENTITY, urn, aspects.RESULT_ASPECT, value),
    }
    for name, call in kinds.items():
        print(f"{name:32s} {per_call_ms(call, calls):6.3f} ms of client CPU per call")

if __name__ == "__main__":
    main()
