"""The peak of Python allocations at a task's finish: the log text of a run that printed 1 KiB
lines is taken from the log's chunks, the report cut from it, and then that result with its
2 MB report is persisted in the outbox, read back by a fresh outbox (a restart) and delivered to
a GMS stand-in on loopback.

Not a bench row: a unit-level measure of the finish's copies (``docs/performance-log.md``). Run it
with the project's venv from the repository root: ``python bench/finish_peak.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from executor.datahub import aspects
from executor.datahub.gms import GmsClient
from executor.pool import outcome
from executor.reporting.outbox import Outbox
from executor.sandbox.output import BoundedLog

SERVER = r"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), H)
print(server.server_port, flush=True)
server.serve_forever()
"""
LINES = 2000
"""DataHub's report cap: the report of a flood of 1 KiB lines is its last 2,000 lines."""


def measure(label: str, step: Callable[[], object]) -> None:
    """Print the step's peak of traced allocations above what was live before, and its CPU.
    Tracing runs from the start (``main``), so what a step frees of its inputs counts too."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    began = time.process_time()
    step()
    cpu = time.process_time() - began
    peak = tracemalloc.get_traced_memory()[1] - base
    print(f"{label:8s} peak +{peak / 1e6:5.2f} MB  cpu {cpu * 1e3:5.1f} ms")


def log_steps(line: str) -> None:
    """The run's log text from its chunks (a flood read 1 MiB at a time), then the report."""
    log = BoundedLog()
    for n in range(8):  # each read its own bytes, as the reader hands them over
        log.add(b"".join(f"{n * 1024 + i:06d} {line}\n".encode() for i in range(1024)))
    texts: list[str] = []
    measure("text()", log.text)  # a copy while the log keeps its chunks (progress reports)
    measure("log text", lambda: texts.append(log.take_text()))  # the run's end: the chunks go
    summary = "Exited with code 0 (success).\nMeasured: peak memory 20 MiB."
    measure("report", lambda: outcome.report_text(summary, texts[0]))


def main() -> None:
    tracemalloc.start()
    line = "x" * 1000 + ' "q" \\ '
    log_steps(line)
    report = "".join(f"{i:06d} {line}\n" for i in range(LINES))
    aspect = aspects.result_aspect("SUCCESS", 1, 2, report, None, "RUN_INGEST", None)
    record = {"urn": "urn:li:dataHubExecutionRequest:r1", "aspect": aspect, "status": "SUCCESS",
              "release": False}
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as state, GmsClient(f"http://127.0.0.1:{port}", "made-up") as gms:
            box = Outbox(Path(state) / "pools" / "p" / "outbox", binding="made-up")
            gms.ingest_proposal("e", "urn:li:x:warm", "a", {"v": 1})  # connection and imports
            measure("put", lambda: box.put("r1", record))
            measure("reload", Outbox(box.directory, binding="made-up").pending)
            measure("deliver", lambda: gms.ingest_proposal("e", "urn:li:x:r1", "a", aspect))
    finally:
        server.terminate()
        server.wait()
    print(f"report {len(report) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
