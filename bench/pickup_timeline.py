"""Where a pickup's time goes: each step's time from the SQS send, the executor beside the sandboxed floor.

Usage (in the project's venv): ``python -m bench.pickup_timeline [N]`` (N pickups per side, 20 by
default), under ``flock`` as every bench. It starts the local control plane, a one-worker executor
(as ``bench.suite``'s pickup row) and the protocol + sandbox floor (``bench.protocol_floor`` with
``bench.sandbox_floor``), runs N trivial pickups on each, one at a time and back to back (the
next sent as soon as the previous result is in, as in the suite's pickup row), and prints the
p50 of each step's time from the send (ms).

The steps are stamped from outside the executor's code: each child runs under this module's
``probe``, which wraps a few of its functions to append ``name time`` lines to a file named by
``BENCH_TIMELINE_EVENTS`` before it runs the child's own main; moto's receive answer is stamped in
this process (the control plane runs here; both sides talk to moto directly, as the suite's
comparative rows since session 16, so no gateway relays it), the recipe's start-up (its
interpreter up, waiting for its stdin) and its first line by the stand-in itself. One pickup at a
time, so the first stamp of each name after the send belongs to that pickup.
"""

from __future__ import annotations

import functools
import os
import runpy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENTS_ENV = "BENCH_TIMELINE_EVENTS"
EXECUTOR_STEPS = (
    ("moto", "moto answers the receive"),
    ("receive", "the poller's receive returns"),
    ("runner", "the Task started (by the poller)"),
    ("polling", "the poller's next receive begins"),
    ("task", "the Task's first turn (Prepare)"),
    ("asking", "the input asked for (GMS)"),
    ("input", "the input read (GMS)"),
    ("weighed", "the Task tells its weight"),
    ("prepared", "the run prepared (spec, venv)"),
    ("admit", "the runner's turn (WeightKnown)"),
    ("admitted", "the Task's turn (Admitted)"),
    ("spawning", "the spawn begins"),
    ("spawned", "the spawn returned"),
    ("resolver", "the resolver's turn (Resolve)"),
    ("secrets", "the secrets back at the Task"),
    ("fed", "the recipe's stdin written"),
    ("running", "RUNNING sent (Reporter)"),
    ("deleted", "a message deleted (the previous one's?)"),
    ("boot", "the recipe waits for its stdin"),
    ("first", "the recipe's first line"),
)
FLOOR_STEPS = ("moto", "receive", "asking", "input", "spawning", "spawned", "secrets", "fed", "running",
               "boot", "first")


# -- the probe, in a child ---------------------------------------------------------------------
def _stamp(fd: int, name: str) -> None:
    os.write(fd, f"{name} {time.time():.6f}\n".encode())


def _after(owner: Any, attr: str, fd: int, name: str, when: Callable[[Any], bool] = bool) -> None:
    """Stamp ``name`` when ``owner.attr`` returns (a true result by default)."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when(result):
            _stamp(fd, name)
        return result

    setattr(owner, attr, wrapper)


def _before(owner: Any, attr: str, fd: int, name: str,
            when: Callable[[tuple[Any, ...]], bool] = bool) -> None:
    """Stamp ``name`` when ``owner.attr`` is called (if ``when`` of its arguments holds)."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(args):
            _stamp(fd, name)
        return original(*args, **kwargs)

    setattr(owner, attr, wrapper)


def _probe_executor(fd: int) -> None:
    from executor.datahub.gms import GmsClient
    from executor.pool import messages
    from executor.pool.reporter import Reporter
    from executor.pool.resolver import SecretResolver
    from executor.pool.runner import TaskRunner
    from executor.pool.sandboxing import SandboxLauncher
    from executor.pool.task import Task
    from executor.queue.sqs import SqsQueue
    from executor.sandbox.run import SandboxRun

    always: Callable[[Any], bool] = lambda _: True  # noqa: E731
    _before(SqsQueue, "receive", fd, "polling", always)
    _after(SqsQueue, "receive", fd, "receive")
    _before(Task, "start", fd, "runner", always)
    _before(Task, "_prepare", fd, "task", always)
    _before(GmsClient, "batch_get_aspects", fd, "asking", always)
    _after(Task, "_may_run", fd, "input", always)
    _before(Task, "_to_runner", fd, "weighed", lambda a: isinstance(a[1], messages.WeightKnown))
    _after(SandboxLauncher, "prepare", fd, "prepared", always)
    _before(SandboxLauncher, "prestart", fd, "spawning", always)
    _before(TaskRunner, "handle", fd, "admit", lambda a: isinstance(a[1], messages.WeightKnown))
    _before(Task, "_admitted", fd, "admitted", always)
    _after(SandboxRun, "start", fd, "spawned", always)
    _before(SecretResolver, "handle", fd, "resolver", lambda a: isinstance(a[1], messages.Resolve))
    _before(Task, "_launch", fd, "secrets", always)
    _after(SandboxRun, "give_input", fd, "fed", always)
    _after(Reporter, "_send_progress", fd, "running", always)
    _after(SqsQueue, "delete", fd, "deleted", always)


def _probe_floor(fd: int) -> None:
    from bench import protocol_floor, sandbox_floor

    _after(protocol_floor.Sqs, "call", fd, "receive", lambda answer: bool(answer.get("Messages")))
    _before(protocol_floor.Gms, "aspect", fd, "asking", lambda _: True)
    _after(protocol_floor.Gms, "aspect", fd, "input", lambda _: True)
    _before(sandbox_floor.BareSandbox, "start", fd, "spawning", lambda _: True)
    _after(sandbox_floor.BareSandbox, "start", fd, "spawned", lambda _: True)
    _after(protocol_floor.Gms, "secrets", fd, "secrets", lambda _: True)
    _after(sandbox_floor.BareRun, "feed", fd, "fed", lambda _: True)
    _after(protocol_floor.Gms, "write", fd, "running", lambda _: True)


def probe(side: str, argv: list[str]) -> None:
    """Run a child's main (``executor`` or ``bench.protocol_floor``) with its steps stamped."""
    fd = os.open(os.environ[EVENTS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if side == "executor":
        _probe_executor(fd)
        sys.argv = ["executor", *argv]
        runpy.run_module("executor", run_name="__main__", alter_sys=True)
        return
    from bench import protocol_floor

    _probe_floor(fd)
    protocol_floor.main()  # imported, not run as ``__main__``: its classes are the ones wrapped


# -- the driver --------------------------------------------------------------------------------
def _events(path: Path, since: float, until: float) -> dict[str, float]:
    """The first stamp of each name in ``[since, until]``: one pickup's (they run one at a time)."""
    first: dict[str, float] = {}
    for line in path.read_text().splitlines():
        name, _, stamp = line.partition(" ")
        t = float(stamp)
        if since <= t <= until and name not in first:
            first[name] = t
    return first


def _pickup(world: Any, source: str, events: Path) -> dict[str, float]:
    """One pickup: ms from the send to each step stamped (the stand-in's own two included)."""
    from bench.world import wait_for

    urn, _created = world.submit(source)
    stamp = wait_for(lambda: world.started(urn), 60, f"{urn} to start")
    world.wait_result(urn)
    sent = world.sent[urn]
    steps = _events(events, sent, stamp["t"] + 1.0)
    steps.update(boot=stamp.get("boot", stamp["t"]), first=stamp["t"])
    return {name: (t - sent) * 1000 for name, t in steps.items()}


def _stamp_receive_answers(fd: int) -> None:
    """In this process (the control plane's): stamp each receive answer moto sends."""
    from executor.local.controlplane.moto_server import WsgiHandler

    answer = WsgiHandler._answer

    def moto_answer(self: Any, status: str, headers: list[tuple[str, str]], data: bytes) -> None:
        answer(self, status, headers, data)
        if b"ReceiptHandle" in data:
            _stamp(fd, "moto")

    WsgiHandler._answer = moto_answer  # type: ignore[method-assign]


def _table(rows: dict[str, list[dict[str, float]]]) -> list[str]:
    def p50(side: str, name: str) -> str:
        values = [sample[name] for sample in rows[side] if name in sample]
        return f"{statistics.median(values):7.1f}" if values else "      -"

    lines = [f"{'step (ms from the SQS send, p50)':<44} {'executor':>8} {'floor':>8}"]
    for name, what in EXECUTOR_STEPS:
        floor = p50("floor", name) if name in FLOOR_STEPS else "      -"
        lines.append(f"{what:<44} {p50('executor', name):>8} {floor:>8}")
    return lines


def run(count: int) -> list[str]:
    from loguru import logger

    from bench.anchor import ProtocolFloor
    from bench.world import World

    logger.remove()  # the control plane's request lines would bury the table
    logger.add(sys.stderr, level="WARNING")
    with tempfile.TemporaryDirectory(prefix="pickup-timeline-") as tmp:
        events = Path(tmp) / "events"
        os.environ[EVENTS_ENV] = str(events)
        fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        _stamp_receive_answers(fd)
        world = World(Path(tmp), ("default", "baresb"), direct=("default", "baresb"))
        floor = None
        try:
            head = ("-m", "bench.pickup_timeline", "probe")
            world.executor([{"id": "default", "max_workers": 1, "prefetch": 1}], command=(*head, "executor"))
            cp = world.cp
            lease = {**cp.executor_configs(["baresb"])[0], "queueUrl": cp.queue_url("baresb")}
            standin = world.venv_root / "benchsim-bundled" / "bin" / "datahub"
            floor = ProtocolFloor(cp.gms_url, cp.token, lease, standin, Path(tmp) / "baresb", sandbox=True,
                                  command=(*head, "floor"))
            sources = {side: world.source(pool, {"mode": "trivial"})
                       for side, pool in (("executor", "default"), ("floor", "baresb"))}
            for source in sources.values():  # warm up: start-up costs stay out
                world.wait_result(world.submit(source)[0])
            rows: dict[str, list[dict[str, float]]] = {"executor": [], "floor": []}
            for side, source in sources.items():  # each side's pickups back to back, as the suite's row
                for _ in range(count):
                    rows[side].append(_pickup(world, source, events))
            return _table(rows)
        finally:
            if floor is not None:
                floor.close()
            world.close()
            os.close(fd)


def main() -> None:
    if sys.argv[1:2] == ["probe"]:
        probe(sys.argv[2], sys.argv[3:])
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print("\n".join(run(count)))


if __name__ == "__main__":
    main()
