"""Poison and duplicate messages, sent with boto3 straight to the pool's queue on moto.

A burst of malformed, oversized and unrunnable messages (another task kind, a request GMS does
not know) never crashes the poller: each is logged once, without its body, and the queue's
redrive policy moves it to the dead-letter queue within seconds, while real work goes on.
The same request delivered several times (while it runs, to this executor or another one,
and after it finished) runs once.
"""

from __future__ import annotations

import base64
import json
import uuid

from executor.datahub.envelope import encode_envelope
from tests.faults.harness import FaultWorld, wait_until

MARKER = "POISON-BODY-d41d8cd9"
"""In every poison body: must never reach a log line."""
RECEIVES = 3


def envelope_with_task(urn: str, task: str) -> str:
    envelope = json.loads(base64.b64decode(encode_envelope(urn, "default")))
    envelope["headers"]["task"] = task
    envelope["marker"] = MARKER
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def poison_bodies() -> list[str]:
    unknown = f"urn:li:dataHubExecutionRequest:{uuid.uuid4()}"
    return [
        f"not json at all {MARKER}",
        base64.b64encode(f"base64, but not JSON {MARKER}".encode()).decode(),
        json.dumps({"hello": MARKER}),  # JSON without a request
        json.dumps({"urn": "urn:li:corpuser:" + MARKER}),  # not an execution request
        json.dumps({"urn": unknown, "pad": MARKER + "x" * 300_000}),  # over 256 KiB
        envelope_with_task(unknown, "datahub_executor.worker.assertion_request"),  # another task kind
        encode_envelope(f"urn:li:dataHubExecutionRequest:{uuid.uuid4()}", "default"),  # unknown to GMS
    ]


def test_a_poison_burst_goes_to_the_dead_letter_queue_and_work_goes_on(world: FaultWorld) -> None:
    world.start_cp(max_receive_count=RECEIVES)
    a = world.executor("a")
    bodies = poison_bodies()
    world.send_raw(bodies[:4])
    request = world.submit()
    world.send_raw(bodies[4:])
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"})["status"] == "SUCCESS"
    in_dlq = len(bodies), 0
    wait_until(lambda: world.queue_counts(dlq=True) == in_dlq, 60, "every poison message in the DLQ")
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the pool's queue to be empty")

    warned = a.logged(lambda r: r["level"] == "WARNING" and "not run:" in r["msg"])
    ids = [r["msg"].split()[1] for r in warned]
    assert len(ids) == len(set(ids)) == len(bodies)  # each logged once, though received 3 times
    assert MARKER not in a.text()
    assert not a.count("crashed") and not a.count("restarting in")
    assert a.running


def test_the_same_request_delivered_again_and_again_runs_once(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a")
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    b = world.executor("b")
    b.wait_log("lease obtained")
    duplicate = encode_envelope(request.urn, "default")
    world.send_raw([duplicate, duplicate])  # while it runs: to a, or to b
    wait_until(
        lambda: a.count("duplicate message for a running request") + b.count("RUNNING elsewhere") >= 2,
        30, "both duplicates to be turned away",
    )
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"})["status"] == "SUCCESS"
    turned_away = a.count("duplicate message for a running request")
    world.send_raw([duplicate])  # after it finished
    wait_until(lambda: world.queue_counts() == (0, 0), 60, "every duplicate to be deleted")
    # Deleted unrun: by a Task that finds the result terminal, or, if it arrives before the
    # poller has settled the finished request's own message, as a duplicate of a held one.
    late = a.count("duplicate message for a running request") - turned_away
    assert a.count("not running it again") + b.count("not running it again") + late >= 1
    assert len(world.ledger.events(request.run_id, "start")) == 1
    assert world.ledger.duplicates(request.run_id) == 0
