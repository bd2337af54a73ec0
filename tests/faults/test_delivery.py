"""Delivery under a refused token and a GMS that never answers (issue 11 points 3 and 4).

A refused token loses nothing: with GMS answering 401 or 403, a finished request's result stays
in the outbox, its message stays held (nothing is deleted before GMS has the result), the pool
says on /readyz why it is not ready, and the result is delivered once the token works again,
whether the executor keeps running or is restarted on the same state dir.

Slowness is not death: with a GMS that accepts connections and never answers for five
minutes while four tasks run, /healthz stays green the whole time (every GMS call is bounded by
its total deadline and a strand's liveness allowance allows one such call per actor on it;
sampled every second, each sample checked), /readyz goes red with the reason soon after the
stall begins and stays red with it until GMS answers, and all four results are delivered once,
after. The window, ``STALL_S``, is the issue's five minutes: about twenty times the point at
which a turn reads stuck (2 x (5 s + the 2 s call deadline)), thirty visibility lease periods,
three hundred progress intervals. (``age_s`` on /healthz is how long a component has kept work
waiting, read at the request since session 19; it was a beat's age.)
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.faults.harness import FaultWorld, Request, wait_until
from tests.faults.observed import Observed, observed
from tests.faults.tcpproxy import Mode
from tests.fixtures.outbox_previous import write_previous_format

STALL_S = 300.0
SAMPLE_S = 1.0
RED_WITHIN_S = 30.0
"""How soon after the stall begins /readyz must say so: a progress call runs into its 2 s
deadline within a few seconds; this leaves room for a machine shared by parallel test runs."""
FIGURES: dict[str, float] = {}


def outbox_files(world: FaultWorld, state: str = "a") -> list[Path]:
    return sorted((world.tmp / f"state-{state}" / "pools" / "default" / "outbox").glob("*.json"))


def finish_while_refused(world: FaultWorld, obs: Observed, status: int) -> Request:
    """Run a request, refuse the token with ``status`` and let it finish; checks nothing is lost."""
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    world.wait_status(request, {"RUNNING"})
    world.live_cp.refuse_token(status)
    mark = obs.executor.mark()
    world.open_gate(request)
    world.ledger.wait(request.run_id, "end")
    obs.executor.wait_log("not delivered: GMS refused the token", since=mark)
    wait_until(lambda: "results not delivered: GMS refused the token" in obs.pool_reason(), 30,
               "/readyz to say why")
    refused_since = time.monotonic()

    def held() -> bool:
        assert world.queue_counts() == (0, 1), "the message must stay held while GMS lacks the result"
        assert len(outbox_files(world)) == 1, "the result must stay in the outbox"
        return time.monotonic() - refused_since > 12  # more than a visibility lease (10 s)

    wait_until(held, 60, "a lease's worth of refusals", 0.5)
    assert world.result(request.urn)["status"] == "RUNNING"  # type: ignore[index]
    assert obs.healthz()[0] == 200  # not ready, but alive: no restart wanted
    return request


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_keeps_the_result_until_the_token_works(world: FaultWorld, status: int) -> None:
    world.start_cp()
    obs = observed(world)
    request = finish_while_refused(world, obs, status)
    world.live_cp.refuse_token(None)  # the token works again
    assert world.wait_status(request, {"SUCCESS", "FAILURE"}, timeout_s=90)["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 60, "the message to be deleted after delivery")
    wait_until(lambda: obs.pool_reason() == "leased and polling", 60, "the pool to be ready again")
    assert not outbox_files(world)
    assert len(world.ledger.events(request.run_id, "start")) == 1


@pytest.mark.parametrize("left_by", ["this version", "the previous version"])
def test_a_refused_token_result_is_delivered_after_a_restart_on_the_same_state(
        world: FaultWorld, left_by: str) -> None:
    """Also after an upgrade: a record the previous version wrote (its older format) is
    delivered by the new executor on the same state dir, once, and nothing is quarantined."""
    world.start_cp()
    first = observed(world, "a")
    request = finish_while_refused(world, first, 401)
    first.executor.signal(signal.SIGTERM)
    first.executor.wait(60)
    [record_file] = outbox_files(world)  # the result survived the stop
    if left_by == "the previous version":
        as_previous_version_wrote_it(record_file, world.token)
    world.live_cp.refuse_token(None)
    observed(world, "b", state="a")  # same state dir: the outbox is flushed first
    assert world.wait_status(request, {"SUCCESS", "FAILURE"}, timeout_s=90)["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 90, "the message to be deleted after delivery")
    assert not outbox_files(world) and not list(record_file.parent.glob("*.quarantined"))
    assert len(world.ledger.events(request.run_id, "start")) == 1


def as_previous_version_wrote_it(record_file: Path, token: str) -> None:
    """Rewrite an outbox record in the format of the version before records were signed as
    written bytes."""
    head, body = record_file.read_bytes().split(b"\n", 1)
    header = json.loads(head)
    write_previous_format(record_file, token, header["pool"], header["key"], header["stored_at_ns"],
                          json.loads(body))


@pytest.mark.slow
@pytest.mark.timeout(STALL_S + 300)  # the stall itself, then start-up and delivery
def test_a_gms_that_never_answers_is_a_readiness_matter_not_a_liveness_one(world: FaultWorld) -> None:
    world.start_cp()
    gms = world.gms_proxy()
    obs = observed(world, gms_url=gms.url, max_workers=4)
    requests = [world.submit() for _ in range(4)]
    for request in requests:
        world.ledger.wait(request.run_id, "start", timeout_s=90)
        world.wait_status(request, {"RUNNING"}, timeout_s=90)

    gms.set_mode(Mode.STALL)
    stall = _hold_the_stall(world, obs, requests)
    assert all(world.ledger.events(r.run_id, "end") for r in requests)
    assert all(world.result(r.urn)["status"] == "RUNNING" for r in requests)  # type: ignore[index]

    gms.set_mode(Mode.PASS)
    answered = time.monotonic()
    for request in requests:
        assert world.wait_status(request, {"SUCCESS", "FAILURE"}, timeout_s=120)["status"] == "SUCCESS"
    FIGURES.update(stall, delivered_after_s=round(time.monotonic() - answered, 1))
    print(f"figures: {FIGURES}")
    wait_until(lambda: world.queue_counts() == (0, 0), 60, "every message deleted after delivery")
    for request in requests:
        assert len(world.ledger.events(request.run_id, "start")) == 1
        finals = [h["status"] for h in world.history(request.urn) if h.get("status") != "RUNNING"]
        assert finals == ["SUCCESS"], finals  # delivered once


def _hold_the_stall(world: FaultWorld, obs: Observed, requests: list[Request]) -> dict[str, float]:
    """Sample /healthz and /readyz every ``SAMPLE_S`` for ``STALL_S``, asserting each sample:
    always live; not ready with the reason from ``RED_WITHIN_S`` on. The tasks finish a third of
    the way in (their results then wait in the outbox). Returns the figures of the window."""
    began = time.monotonic()
    samples, oldest_beat, red_since = 0, 0.0, None
    while (now := time.monotonic()) - began < STALL_S:
        status, body = obs.healthz()
        assert status == 200, body  # no component stays stuck
        oldest_beat = max(oldest_beat, *(c["age_s"] for c in body["components"].values()))
        ready_status, ready = obs.readyz()
        reason = str(ready.get("pools", {}).get("default", {}).get("reason", ""))
        red = ready_status == 503 and "GMS not answering" in reason
        if red and red_since is None:
            red_since = now - began
        if red_since is not None or now - began > RED_WITHIN_S:
            assert red, f"{now - began:.0f}s into the stall: /readyz {ready_status} {ready}"
        if now - began > STALL_S / 3 and not requests[0].gate.exists():
            for request in requests:
                world.open_gate(request)  # they finish while GMS hangs: results wait in the outbox
        samples += 1
        time.sleep(max(0.0, now + SAMPLE_S - time.monotonic()))  # the sampling period
    assert red_since is not None
    return {"stall_s": STALL_S, "samples": samples, "oldest_beat_s": oldest_beat,
            "red_after_s": round(red_since, 1)}


def test_a_result_gms_refuses_is_kept_and_the_others_still_go_out(world: FaultWorld) -> None:
    world.start_cp()
    obs = observed(world)
    refused, accepted = world.submit(), world.submit()
    for request in (refused, accepted):
        world.wait_status(request, {"RUNNING"}, timeout_s=90)
    world.live_cp.refuse_results({refused.urn})
    world.open_gate(refused)
    world.ledger.wait(refused.run_id, "end")
    says = f"GMS refused the result for {refused.urn}"
    wait_until(lambda: says in obs.pool_reason(), 30, "/readyz to say why")
    world.open_gate(accepted)  # finishes after the refused one: its result must not wait behind it
    assert world.wait_status(accepted, {"SUCCESS", "FAILURE"}, timeout_s=60)["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 1), 60, "the accepted request's message to be deleted")
    assert len(outbox_files(world)) == 1 and world.result(refused.urn)["status"] == "RUNNING"  # type: ignore[index]
    world.live_cp.refuse_results(set())
    assert world.wait_status(refused, {"SUCCESS", "FAILURE"}, timeout_s=60)["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 60, "every message deleted after delivery")
    wait_until(lambda: obs.pool_reason() == "leased and polling", 60, "the pool to be ready again")
