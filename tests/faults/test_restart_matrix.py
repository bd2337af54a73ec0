"""The restart matrix (issue 11): crash each pool actor on each message class it handles.

One executor runs two pools, ``one`` (``max_workers`` 1) and ``three`` (3), and the fault
switch crashes a group of (actor, message class) pairs once in each pool while requests flow
(each request runs the stand-in recipe for a second and needs a secret, so the resolver is
in the path). A Task is crashed by naming its request (``task:<run id>@Class``), which is why
the requests are submitted before the executor starts. Then, for every case:

- every crash really happened (its log line is there);
- every request ended exactly once with its real status: SUCCESS, or FAILURE naming the
  crash for a request whose own Task crashed; none was ever reported interrupted, none ran
  twice or overlapped another (a runner crash leaves its Tasks running and the next runner
  adopts them, so whatever crashes, nothing is rerun);
- capacity came back: a second wave of ``max_workers`` gated requests per pool all run at
  the same time;
- the queues drain within two visibility periods of the last delivered result.

Message classes not in the matrix either need another fault to appear (``LeaseRejected``,
``LeaseLost``, ``Unrunnable``, ``FlushOutbox`` retries) or another request (``WeightKnown``: the
runner hears it only from a Task whose own weight differs from the default) and have their own
tests, or belong to the shutdown (``Drain``, ``InterruptAll``, ``StopReceiving``:
``test_sigterm.py``), or to KILL (``Cancel``: ``test_kill_phases.py``), or arrive only by timing
(``DeleteAcked``: the poller also makes the waiting deletes before a receive once their time has
come, and a crash on it did not fire in every pool).
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import INTERRUPTED, TERMINAL, Executor, FaultWorld, Request, wait_until
from tests.faults.test_lease import CREATE_SECRET
from tests.fixtures.controlplane import graphql

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"
POOLS = {"one": 1, "three": 3}
PREFETCH = {"runner-requests": 1}
"""A Task admits itself in the task book, unheard by the runner, and one that must wait (the
prefetched one beyond the slots, which this group keeps so that waiting Tasks meet the runner's
crashes) is admitted by the end that frees its room: the runner hears a ``WeightKnown`` only from
a Task whose weight is not the default (none here), and of an orderly end only when it leaves the
book empty (``TrimSoon``, once per trim look). The poller starts the Tasks itself; the runner
hears ``TaskStarted`` only for the first Task of an empty book (to start its KILL poll), in the
runner-timers group. No actor gets a ``Beat`` any more (liveness is read when asked, session
19): the runner's safety nets ride on its ``PollSignals``, in the runner-timers group."""
VISIBILITY_S = 10
RECIPE_S = 1.0

GROUPS: dict[str, list[tuple[str, str]]] = {
    "leaser-poller-start": [
        ("leaser", "RefreshLease"), ("poller", "LeaseGranted"), ("poller", "Poll"),
        ("poller", "LiveTasks"),
    ],
    "resolver-reporter": [
        ("resolver", "Resolve"), ("reporter", "ReportPresence"),
        ("reporter", "Progress"), ("reporter", "Finish"),
    ],
    "runner-requests": [
        ("runner", "TrimSoon"),
    ],
    "runner-timers": [
        ("runner", "TaskStarted"), ("runner", "PollSignals"), ("runner", "TasksWanted"),
    ],
    "poller-settling": [
        ("poller", "Capacity"), ("poller", "Housekeeping"), ("poller", "Acknowledge"),
        ("leaser", "LeaseWanted"),
    ],
    "task": [
        ("task", "Prepare"), ("task", "Admitted"), ("task", "SecretsResolved"),
        ("task", "SendProgress"), ("task", "SandboxExited"),
    ],
}
"""At most five crashes per pool and case: a sixth within 30 s would escalate to the root. A
class that only arrives after another actor's restart (``LeaseWanted``: a new poller asks) is
grouped with crashes that cause it after its own actor is up."""


def _rules(group: list[tuple[str, str]], wave: dict[str, list[Request]]) -> list[tuple[str, str]]:
    """(path suffix, message class) per crash; a Task is named by its request's run id."""
    rules = []
    for pool, requests in wave.items():
        for i, (actor, message) in enumerate(group):
            where = f"task:{requests[i].run_id}" if actor == "task" else f"pool:{pool}/{actor}"
            rules.append((where, message))
    return rules


def _submit_wave(world: FaultWorld, per_pool: dict[str, int], **sim: object) -> dict[str, list[Request]]:
    return {pool: [world.submit(pool=pool, secret="${SIM_SECRET}", **sim) for _ in range(n)]
            for pool, n in per_pool.items()}


def _check_exactly_once(world: FaultWorld, a: Executor, request: Request, crashed_task: bool) -> float:
    """The request's one result (SUCCESS, or FAILURE for its own Task's crash), never an
    interruption, from one run; returns when it was written (monotonic clock of this process)."""
    def real() -> dict[str, object] | None:
        assert a.running, "the executor exited:\n" + "".join(a.process.raw[-30:])
        result = world.result(request.urn)
        done = result and result.get("status") in TERMINAL
        return result if done and not str(result.get("report", "")).startswith(INTERRUPTED) else None

    wait_until(real, 90, f"{request.run_id} to reach its real result")
    delivered = time.monotonic()
    final = [h for h in world.history(request.urn)
             if h.get("status") in TERMINAL and not str(h.get("report", "")).startswith(INTERRUPTED)]
    assert len(final) == 1, f"{request.run_id}: {[h.get('status') for h in final]}"
    if crashed_task:
        assert final[0]["status"] == "FAILURE" and "task actor crashed" in final[0]["report"]
    else:
        assert final[0]["status"] == "SUCCESS", final[0].get("report", "")[:500]
    assert not world.ledger.events(request.run_id, "overlap")  # never two live runs at once
    reports = [str(h.get("report", "")) for h in world.history(request.urn)]
    assert not [r for r in reports if r.startswith(INTERRUPTED)], f"{request.run_id} was interrupted"
    # No rerun at all: a runner crash leaves its Tasks running; the next runner adopts them.
    assert world.ledger.duplicates(request.run_id) == 0
    assert len(world.ledger.events(request.run_id, "start")) <= 1  # a crashed Prepare never started it
    if not crashed_task:  # a Task's own crash kills its recipe; no other crash touches one
        assert not world.ledger.events(request.run_id, "term")
    return delivered


@pytest.mark.parametrize("group", list(GROUPS), ids=list(GROUPS))
def test_every_actor_survives_a_crash_on_every_message(world: FaultWorld, group: str) -> None:
    world.start_cp(pools=tuple(POOLS))
    graphql(world.live_cp, CREATE_SECRET, {"input": {"name": "SIM_SECRET", "value": "sim-secret-value"}})
    crashes = GROUPS[group]
    per_pool = {pool: max(workers + 1, len(crashes)) for pool, workers in POOLS.items()}
    wave = _submit_wave(world, per_pool, duration_s=RECIPE_S)
    rules = _rules(crashes, wave)
    pools = [{"id": pool, "max_workers": n, "visibility_s": VISIBILITY_S, "prefetch": PREFETCH.get(group, 0)}
             for pool, n in POOLS.items()]
    a = world.executor("a", pools=pools, gms_timeout_s=1.0,
                       env={FAULTS: ",".join(f"{where}@{message}*1" for where, message in rules)})

    crashed = {r.run_id for where, _ in rules if where.startswith("task:") for r in world.requests
               if where == f"task:{r.run_id}"}
    delivered = max(_check_exactly_once(world, a, r, r.run_id in crashed) for rs in wave.values() for r in rs)
    second = {pool: [world.submit(pool=pool, secret="${SIM_SECRET}") for _ in range(n)]
              for pool, n in POOLS.items()}
    for requests in second.values():  # all at once: capacity is back to max_workers
        for request in requests:
            world.ledger.wait(request.run_id, "start", timeout_s=60)
    for where, message in rules:  # some classes come only while messages are held for a while
        wait_until(lambda w=where, m=message: a.count(f"{w} on handling {m}"), 30, f"{where}@{message}")
    for requests in second.values():
        for request in requests:
            world.open_gate(request)
    for requests in second.values():
        delivered = max(delivered, *(_check_exactly_once(world, a, r, False) for r in requests))
    for pool in POOLS:
        wait_until(lambda p=pool: world.queue_counts(pool=p) == (0, 0), 2 * VISIBILITY_S + 5,
                   f"the queue of pool {pool} to drain")
    assert time.monotonic() - delivered <= 2 * VISIBILITY_S + 5
    assert a.running
