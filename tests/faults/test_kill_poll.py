"""The runner polls GMS for KILL signals only while its pool has a task (idle CPU).

Seen from outside through the fault switch: a rule crashes the runner the first time it
handles ``PollSignals``, so the crash's log line says when the first poll happened. At rest no
poll comes while the pool's actors beat (read on ``/healthz``); the first task starts the
polling, and the runner's crash on it interrupts nothing.
"""

from __future__ import annotations

import json
import re

from tests.faults.harness import Executor, FaultWorld, wait_until
from tests.ops.http import get

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"
RUNNER = "root/pool:default/runner"
CRASHED = "crashed: RuntimeError"


def _runner_beat_age(url: str) -> float | None:
    try:
        body = json.loads(get(f"{url}/healthz").body or b"{}")
    except OSError:
        return None
    component = body.get("components", {}).get(RUNNER)
    return float(component["age_s"]) if component else None


def _wait_beats(a: Executor, url: str, beats: int) -> None:
    """Return after the runner has beaten ``beats`` more times (its beat's age fell back)."""
    seen = {"last": _runner_beat_age(url) or 0.0, "beats": 0}

    def counted() -> bool:
        assert a.running, a.text()[-2000:]
        age = _runner_beat_age(url)
        if age is not None:
            seen["beats"] += age < seen["last"]
            seen["last"] = age
        return seen["beats"] >= beats

    wait_until(counted, 60, f"{beats} beats of the runner", tick_s=0.1)


def test_no_kill_poll_at_rest_and_one_with_the_first_task(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", signal_poll_interval_s=0.2, env={FAULTS: "pool:default/runner@PollSignals*1"})
    found = re.search(r"http://[\d.]+:\d+", a.wait_log("health and metrics on")["msg"])
    assert found is not None
    url = found.group(0)
    a.wait_log("executor started")
    _wait_beats(a, url, 2)  # about 5-10 s at rest: 25 and more poll intervals
    assert a.count(CRASHED) == 0, "the runner polled for KILL signals while the pool had no task"

    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    crash = a.wait_log(CRASHED, timeout_s=30)  # the first task started the polling
    assert crash.get("component") == RUNNER, crash
    world.open_gate(request)
    assert world.wait_status(request, timeout_s=60)["status"] == "SUCCESS"  # the runner's crash spared it
    assert world.ledger.duplicates(request.run_id) == 0
