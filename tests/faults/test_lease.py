"""Visibility leases and leased credentials (DESIGN.md, delivery rules).

A message is received with a short lease (``visibility_s``) and extended every third of it for
as long as its request runs: a real datahub CLI run that lasts several leases runs once, while a
second executor polls the same queue all along. Credentials that expire quickly are refreshed
in time (between half and three quarters of their life, never in a loop), and an ExpiredToken
answer makes the executor lease again instead of crashing.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.faults.harness import EXTEND, ROOT, FaultWorld, wait_until
from tests.faults.slowgms import SlowGms
from tests.fixtures.controlplane import graphql

DEMO_METADATA = ROOT / "executor" / "local" / "demo" / "shop_metadata.json"
CREATE_SECRET = "mutation($input: CreateSecretInput!) { createSecret(input: $input) }"
VISIBILITY_S = 10
LEASES_HELD = 2


@pytest.mark.slow
@pytest.mark.cli
def test_a_run_longer_than_its_lease_runs_once(world: FaultWorld, real_cli_root: object) -> None:
    cp = world.start_cp()
    sqs = world.sqs_proxy()
    sink = SlowGms(cp.gms_url)  # the recipe's datahub-rest sink writes through this one, which
    sink.start()  # holds its writes: the real CLI runs until the test lets it go
    world.servers.append(sink)
    graphql(cp, CREATE_SECRET, {"input": {"name": "FAULT_SINK_TOKEN", "value": world.token}})
    recipe = {
        "source": {"type": "file", "config": {"path": str(DEMO_METADATA)}},
        "sink": {"type": "datahub-rest",
                 "config": {"server": sink.url, "token": "${FAULT_SINK_TOKEN}", "timeout_sec": 120}},
    }
    a = world.executor("a", visibility_s=VISIBILITY_S)
    b = world.executor("b", visibility_s=VISIBILITY_S)  # polls the same queue the whole time
    request = world.submit(recipe=recipe)
    wait_until(lambda: sink.held >= 1, 60, "the datahub CLI to write to its sink")
    runner = a if a.count("starting RUN_INGEST") else b
    other = b if runner is a else a

    extensions = int(LEASES_HELD * 3)  # one every visibility/3
    start = sqs.seen[EXTEND]

    def held_past_its_lease() -> bool:
        assert world.queue_counts() == (0, 1), "the message must stay invisible while it runs"
        return sqs.seen[EXTEND] - start >= extensions

    wait_until(held_past_its_lease, LEASES_HELD * VISIBILITY_S + 30, f"{extensions} lease extensions", 0.5)
    sink.release()
    assert world.wait_status(request, {"SUCCESS"}, timeout_s=60)["status"] == "SUCCESS"
    runner.wait_log("finished: SUCCESS")
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted")
    assert runner.count("starting RUN_INGEST") == 1
    assert not other.logged(lambda r: r.get("request") == request.run_id)  # never even received it


def test_short_leases_are_refreshed_in_time_and_never_in_a_loop(world: FaultWorld) -> None:
    world.start_cp(lease_seconds=6)
    a = world.executor("a")
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    mark = a.mark()
    wait_until(lambda: a.count("lease obtained (scheduled)", since=mark) >= 3, 30, "3 scheduled refreshes")
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"})["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted with a fresh lease")

    delays = [float(m.group(1)) for r in a.logged(lambda r: "lease obtained" in r["msg"])
              if (m := re.search(r"next refresh in (\d+)s", r["msg"]))]
    assert delays and all(2 <= d <= 5 for d in delays), delays  # half to 3/4 of a 6 s lease, less the call
    assert not a.count("refused the leased credentials")  # refreshed before they expired
    assert not a.count("crashed")


def test_an_expired_token_answer_triggers_a_refresh_never_a_crash(world: FaultWorld) -> None:
    cp = world.start_cp()
    a = world.executor("a")
    first = world.submit()
    world.ledger.wait(first.run_id, "start")
    mark = a.mark()
    assert cp.expire_leases("default") >= 1  # every key issued so far now answers ExpiredToken
    a.wait_log("refused the leased credentials", since=mark)
    a.wait_log("lease obtained (rejected)", since=mark)
    world.open_gate(first)
    assert world.wait_status(first)["status"] == "SUCCESS"
    second = world.submit()  # the new lease receives new work
    world.open_gate(second)
    assert world.wait_status(second)["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "both messages to be deleted")
    assert not a.count("crashed") and not a.count("restarting in")
    assert json.dumps(a.text()).count(world.token) == 0  # the GMS token never reaches a log
