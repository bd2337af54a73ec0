"""The protocol with its recipes asleep, done bare: the least a runner of it wakes for meanwhile.

The "CPU while 4 recipes sleep" row holds the executor to 0.2 % of a core per running task. A
runner of DataHub's protocol cannot sleep through a run: it reads the request's KILL signal
every ``signal_poll_interval_s`` (2 s), reports RUNNING every ``progress_interval_s`` (5 s; every
other one while the run prints nothing new), extends the message's lease every third of it,
and looks at the run's tree once a second where the kernel enforces memory and processes (the
executor's far pacing; more often without a task cgroup). On this VM a thread that slept is
charged for its wake-up, from tens of microseconds to milliseconds as the host's state moves
(``bench.idle_wakes`` prints the price), so the row is mostly wake-ups times that price.

This child does those duties for up to ``runs`` runs at once, in one loop on one thread: the
runs through ``bench.sandbox_floor`` (work dir, scrubbed environment, task cgroup, spawn
server, masked task log), the KILL read as one batch read for every held request, each duty
due on the multiples of its period on the monotonic clock (as the executor's ticks), so one
wake-up serves every duty due together; the presence record on a thread of its own, as in
``bench.protocol_floor``. No actors, retries, outbox beyond the durable write, or masking of
its own credentials. Its process CPU and wake-ups over the row's window, measured as the
executor's, are the least this protocol costs here while recipes run.

Usage (by the bench): ``python -m bench.sleep_floor`` with a JSON object on stdin
(``bench.protocol_floor``'s, plus ``runs``, ``signal_poll_s``, ``progress_s``, ``visibility_s``);
it prints ``ready`` and serves until it is terminated.
"""

from __future__ import annotations

import json
import math
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.protocol_floor import ENTITY, Begun, Gms, Sqs, begin, child_start, deliver
from bench.sandbox_floor import BareRun, BareSandbox
from executor.datahub import aspects

QUIET_PERIODS = 2
"""While a run prints nothing new, RUNNING goes out every this many progress periods (the
executor's ``QUIET_PROGRESS_PERIODS``)."""


def next_tick(period_s: float, now: float) -> float:
    """The first multiple of ``period_s`` on the monotonic clock after ``now``."""
    return (math.floor(now / period_s) + 1) * period_s


@dataclass
class Held:
    """One request this loop runs (``protocol_floor.begin``), and what it last reported."""

    task: Begun[BareRun]
    reported: int = 0
    """The run's output volume at its last RUNNING."""
    quiet: int = 0
    """Progress periods since its last RUNNING."""

    @property
    def run(self) -> BareRun:
        return self.task.run


class SleepFloor:
    """The loop (see the module doc)."""

    def __init__(self, gms: Gms, sqs: Sqs, box: BareSandbox, config: dict[str, Any]) -> None:
        self.gms, self.sqs, self.box = gms, sqs, box
        self.standin, self.root = config["standin"], config["root"]
        self.runs = int(config.get("runs", 4))
        self.periods = {"look": 1.0, "kill": float(config.get("signal_poll_s", 2.0)),
                        "progress": float(config.get("progress_s", 5.0)),
                        "extend": int(config.get("visibility_s", 300)) / 3}
        self.visibility_s = int(config.get("visibility_s", 300))
        self.held: dict[int, Held] = {}
        """Output descriptor -> the request whose run it is."""
        now = time.monotonic()
        self.due = {duty: next_tick(period, now) for duty, period in self.periods.items()}

    def serve(self) -> None:
        """Receive while there is room; otherwise wait for output, an end or the next duty."""
        while True:
            if len(self.held) < self.runs:
                self._receive(wait_s=1 if self.held else 20)
            if self.held:
                self._wait_and_serve()

    def _receive(self, wait_s: int) -> None:
        answer = self.sqs.call("ReceiveMessage", {"MaxNumberOfMessages": self.runs - len(self.held),
                                                  "WaitTimeSeconds": wait_s,
                                                  "VisibilityTimeout": self.visibility_s})
        for message in answer.get("Messages", []):
            try:
                self._start(message)
            except Exception as exc:  # say why, rather than a bench waiting on a dead child
                print(f"sleep floor: a task did not start: {type(exc).__name__}: {exc}", file=sys.stderr,
                      flush=True)

    def _start(self, message: dict[str, Any]) -> None:
        """The request's start (``begin``: its input, its run, its secrets, RUNNING), its
        output then watched with the others'."""
        task = begin(self.gms, message, self.standin, self.box.start)
        self.held[task.run.open_output(task.secrets)] = Held(task)

    def _wait_and_serve(self) -> None:
        poller = select.poll()
        for fd in self.held:
            poller.register(fd, select.POLLIN)
        wait_s = max(0.0, min(self.due.values()) - time.monotonic())
        for fd, _event in poller.poll(wait_s * 1000):
            held = self.held[fd]
            if not held.run.read():
                del self.held[fd]
                try:
                    self._finish(held)
                except Exception as exc:
                    print(f"sleep floor: a task did not finish: {type(exc).__name__}: {exc}", file=sys.stderr,
                          flush=True)
        now = time.monotonic()
        due = [duty for duty, when in self.due.items() if when <= now]
        for duty in due:
            self.due[duty] = next_tick(self.periods[duty], now)
        if "look" in due:
            for held in self.held.values():
                held.run.look(now)
        if "kill" in due and self.held:
            self._kill_poll()
        if "progress" in due:
            for held in self.held.values():
                held.quiet += 1
                if held.run.volume != held.reported or held.quiet >= QUIET_PERIODS:
                    self._running(held)
        if "extend" in due and self.held:
            self._extend()

    def _extend(self) -> None:
        """Every held message's lease, in one call."""
        entries = [{"Id": str(index), "ReceiptHandle": held.task.receipt,
                    "VisibilityTimeout": self.visibility_s} for index, held in enumerate(self.held.values())]
        self.sqs.call("ChangeMessageVisibilityBatch", {"Entries": entries})

    def _kill_poll(self) -> None:
        """One batch read of every held request's signal; a KILL stops its run's tree."""
        urns = [held.task.urn for held in self.held.values()]
        body = json.dumps({"urns": urns, "aspectNames": [aspects.SIGNAL_ASPECT]}).encode()
        answer = json.loads(self.gms.post(f"/openapi/v2/entity/batch/{ENTITY}", body))
        killed = set()
        for entity in answer.get("entities", []):
            value = ((entity.get("aspects") or entity).get(aspects.SIGNAL_ASPECT) or {}).get("value")
            if aspects.signal_from_aspect(value) == "KILL":
                killed.add(entity.get("urn"))
        for held in self.held.values():
            if held.task.urn in killed:
                held.run.kill("KILL signal")

    def _running(self, held: Held) -> None:
        """RUNNING with the run's latest output (the first went out at its start)."""
        held.reported, held.quiet = held.run.volume, 0
        tail = b"".join(held.run.kept[-20:]).decode("utf-8", "replace")
        started = held.task.started_ms
        self.gms.write(held.task.urn, aspects.RESULT_ASPECT,
                       {"status": "RUNNING", "startTimeMs": started,
                        "durationMs": int(time.time() * 1000) - started, "report": tail})

    def _finish(self, held: Held) -> None:
        """The run's end: reaped and cleaned up, then ``deliver``."""
        code, output = held.run.finish()
        deliver(self.gms, self.sqs, self.root, held.task, code, output)


def main() -> None:
    config, gms, sqs = child_start()
    box = BareSandbox(Path(config["root"]))
    floor = SleepFloor(gms, sqs, box, config)
    print("ready", flush=True)
    try:
        floor.serve()
    finally:
        box.close()


if __name__ == "__main__":
    main()
