"""A stand-in for ``datahub ingest run -c - --report-to FILE`` that takes as long as a test wants.

Installed as ``bin/datahub`` of a fake bundled venv (``faultsim-bundled``) for process-level
faults, where what the recipe does does not matter but how long it runs, and whether it ran
twice, does. Standard library only. It reads the stdin envelope the executor sends (recipe and
secrets, as the real CLI does), takes its settings from ``source.config``:

``ledger``   a directory: every run appends JSON events to ``events.jsonl`` there (start,
             child, overlap, term, end), one ``write`` each (atomic with O_APPEND);
``gate``     a file path: the run prints a progress line every 0.2 s until the file exists;
``duration_s`` optional: the run also ends on its own after this many seconds (no gate needed);
``child``    true: start a grandchild that sleeps (to check that none outlives a dead executor);
``exit_code`` what to exit with once the gate opens (0).

Concurrent runs of one request are detected for real: each run holds an exclusive ``flock``
on ``<ledger>/<run id>.lock`` while it lives; the kernel drops it when the process dies, so a
second run that cannot take it overlaps a live one and records ``overlap``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, NoReturn


def record(ledger: str, event: str, run_id: str, **extra: Any) -> None:
    line = json.dumps({"event": event, "run_id": run_id, "pid": os.getpid(), "t": time.time(), **extra})
    fd = os.open(os.path.join(ledger, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def report_path(argv: list[str]) -> str | None:
    return argv[argv.index("--report-to") + 1] if "--report-to" in argv else None


def main() -> NoReturn:
    envelope = json.loads(sys.stdin.read())
    recipe = json.loads(envelope["__recipe_yaml__"])
    config = recipe["source"]["config"]
    run_id = str(recipe.get("run_id", "no-run-id")).rsplit(":", 1)[-1]
    ledger, gate = config["ledger"], config["gate"]
    record(ledger, "start", run_id)
    lock = open(os.path.join(ledger, f"{run_id}.lock"), "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        record(ledger, "overlap", run_id)
        fcntl.flock(lock, fcntl.LOCK_EX)

    def on_term(signum: int, _frame: object) -> None:
        record(ledger, "term", run_id)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    if config.get("child"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        record(ledger, "child", run_id, child=child.pid)
    step = 0
    ends = time.monotonic() + float(config.get("duration_s", 1e9))
    while not os.path.exists(gate) and time.monotonic() < ends:
        print(f"simrecipe {run_id}: step {step}", flush=True)
        step += 1
        time.sleep(0.2)
    path = report_path(sys.argv)
    if path:
        with open(path, "w") as out:
            json.dump({"source": {"type": "faultsim", "steps": step}, "sink": {}}, out)
    code = int(config.get("exit_code", 0))
    record(ledger, "end", run_id, code=code)
    print(f"simrecipe {run_id}: done after {step} steps", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
