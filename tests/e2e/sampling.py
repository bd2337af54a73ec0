"""Watch the test process's children with psutil while recipes run.

``ProcessSampler`` runs a thread that samples every descendant of this process every few
milliseconds and keeps, per process, each command line and environment it was seen with (to
look for secrets), and the most ``datahub ingest`` runs seen alive at once (to check capacity).
A sandboxed run is forked by the executor's spawn server (``launch.py --serve``, a child of
this process that outlives runs) or starts as ``python -I -S launch.py ... -- <venv>/bin/datahub
ingest run ...``; either way it execs into the CLI, so one run is one process whose command line holds
``ingest run`` and whose parent is this process (the executor runs in-process): the CLI's
own children (it forks, and runs ``ps``) are part of that run's tree, not runs of their own.
A pool's warm spare (on by default) is such a process too, held without input in a
``warm-spare-XXXX`` work dir: it is a run (of that task) only once a task adopted it, which the
executor's log says (``<id> adopts the warm spare (pid N)``: the sampler reads ``log_text``);
a spare no task adopted ran nothing and is left out of every count.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

INTERVAL_S = 0.02
ADOPTED = re.compile(r"(\S+) adopts the warm spare \(pid (\d+)\)")
SPARE_RUN = "warm-spare"
"""``run_id`` of a warm spare's process (and of the task's run that adopted it)."""


@dataclass
class SeenProcess:
    """What one process was seen with over its life."""

    pid: int
    ppid: int
    create_time: float
    cmdlines: set[tuple[str, ...]] = field(default_factory=set)
    environs: list[dict[str, str]] = field(default_factory=list)

    def still_running(self) -> bool:
        """True while this very process (not a later one with its pid) exists and is no zombie."""
        try:
            proc = psutil.Process(self.pid)
            return proc.create_time() == self.create_time and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


def is_ingest_run(cmdline: list[str] | tuple[str, ...]) -> bool:
    """True for a sandboxed ``datahub ingest run`` (the wrapper before exec, or the CLI after)."""
    return " ingest run " in f" {' '.join(cmdline)} "


def is_spawn_server(cmdline: list[str] | tuple[str, ...]) -> bool:
    """True for the executor's spawn server (``launch.py --serve``, ``executor.sandbox.spawner``)."""
    return len(cmdline) > 4 and cmdline[3].endswith("launch.py") and cmdline[4] == "--serve"


def run_id(cmdline: list[str] | tuple[str, ...]) -> str | None:
    """The request id of a run, from its ``--report-to <work dir named <id>-XXXX>/report.json``."""
    if "--report-to" not in cmdline[:-1]:
        return None
    work_dir = Path(cmdline[list(cmdline).index("--report-to") + 1]).parent.name
    return work_dir.rsplit("-", 1)[0]


class ProcessSampler:
    """Samples this process's descendants until stopped; use as a context manager."""

    def __init__(self, log_text: Callable[[], str] = str, interval_s: float = INTERVAL_S) -> None:
        self.log_text = log_text
        """The executor's log so far (``LogCapture.text``), for the warm spares' adoptions."""
        self.interval_s = interval_s
        self.seen: dict[tuple[int, float], SeenProcess] = {}
        self.max_ingest_runs = 0
        self.ingest_runs_now = 0
        self.together: set[frozenset[str]] = set()
        """Sets of request ids whose runs were seen alive at the same moment."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="e2e-process-sampler", daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()

    def _loop(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self._sample(me)
            self._stop.wait(self.interval_s)

    def adopted(self) -> dict[int, str]:
        """The pids of warm spares a task adopted, and that task's id."""
        return {int(pid): task for task, pid in ADOPTED.findall(self.log_text())}

    def _sample(self, me: psutil.Process) -> None:
        runs: set[str] = set()
        adopted: dict[int, str] | None = None  # the log is read only when a spare is seen
        own = tuple(me.cmdline())
        for proc in me.children(recursive=True):
            try:
                key = (proc.pid, proc.create_time())
                cmdline = proc.cmdline()
                if tuple(cmdline) == own:
                    # A child of this process between its fork and its exec (the spawn server's
                    # start) still shows our command line: once, the server first seen so was
                    # counted as a recipe process that outlived its run.
                    continue
                entry = self.seen.get(key) or SeenProcess(proc.pid, proc.ppid(), key[1])
                if tuple(cmdline) not in entry.cmdlines:
                    entry.cmdlines.add(tuple(cmdline))
                    entry.environs.append(proc.environ())
                with self._lock:
                    self.seen[key] = entry
                if entry.ppid == me.pid and is_ingest_run(cmdline):
                    rid = run_id(cmdline) or str(proc.pid)
                    if rid == SPARE_RUN:
                        adopted = self.adopted() if adopted is None else adopted
                        rid = adopted.get(proc.pid, "")
                    if rid:  # a spare no task adopted (yet) is no run
                        runs.add(rid)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        with self._lock:
            self.ingest_runs_now = len(runs)
            self.max_ingest_runs = max(self.max_ingest_runs, len(runs))
            if runs:
                self.together.add(frozenset(runs))

    def processes(self) -> list[SeenProcess]:
        """Every process of a recipe's tree seen so far: not the executor's spawn server, which
        forks runs and outlives them, nor a warm spare no task adopted (``texts`` still searches
        both); a run it forked may have been seen with the server's command line before its exec."""
        adopted = self.adopted()
        return [p for p in self._everything() if not all(is_spawn_server(c) for c in p.cmdlines)
                and (p.pid in adopted or not any(run_id(c) == SPARE_RUN for c in p.cmdlines))]

    def _everything(self) -> list[SeenProcess]:
        with self._lock:
            return list(self.seen.values())

    def ingest_runs_seen(self) -> int:
        """How many distinct runs (sandbox roots that became ``ingest run``) were seen."""
        me = os.getpid()
        return sum(1 for p in self.processes() if p.ppid == me and any(is_ingest_run(c) for c in p.cmdlines))

    def commands(self) -> list[tuple[str, ...]]:
        """Every command line seen."""
        return [c for proc in self.processes() for c in proc.cmdlines]

    def texts(self) -> list[str]:
        """Every command line and environment entry seen, as text to search."""
        out: list[str] = []
        for proc in self._everything():
            out += [" ".join(c) for c in proc.cmdlines]
            out += [f"{k}={v}" for env in proc.environs for k, v in env.items()]
        return out

    def wait_until(self, predicate: Callable[[ProcessSampler], Any], timeout_s: float = 60.0) -> None:
        """Until ``predicate(self)`` holds, or fail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError("the processes never reached the expected state")
            time.sleep(self.interval_s)
