"""Network trouble: GMS and SQS reached through TCP proxies that stall and drop connections.

Stalled connections end in the clients' timeouts (GMS: ``gms.timeout_s``; SQS: the long poll
plus a few seconds), dropped ones fail at once; either way the executor backs off with growing
delays, keeps the recipe running, recovers when the network does, and still stops promptly on
SIGTERM while every connection is stalled.
"""

from __future__ import annotations

import re
import signal

from tests.faults.harness import FaultWorld, wait_until
from tests.faults.tcpproxy import Mode


def receive_retry_delays(records: list[dict[str, object]]) -> list[float]:
    found = (re.search(r"receive failed .*retrying in ([0-9.]+)s", str(r.get("msg", ""))) for r in records)
    return [float(m.group(1)) for m in found if m]


def test_stalls_and_drops_time_out_back_off_and_recover(world: FaultWorld) -> None:
    world.start_cp()
    sqs, gms = world.sqs_proxy(), world.gms_proxy()
    a = world.executor("a", gms_url=gms.url, gms_timeout_s=2)
    request = world.submit()
    world.ledger.wait(request.run_id, "start")
    world.wait_status(request, {"RUNNING"})

    mark = a.mark()
    for proxy in (gms, sqs):
        proxy.set_mode(Mode.STALL)
    a.wait_log("did not answer within 2s", since=mark)  # a GMS call's timeout fired
    a.wait_log("receive failed", since=mark, timeout_s=30)  # so did the SQS long poll's
    for proxy in (gms, sqs):
        proxy.set_mode(Mode.DROP)
    a.wait_log("GMS unreachable", since=mark)
    wait_until(lambda: len(receive_retry_delays(a.process.lines[mark:])) >= 3, 60, "three failed receives")
    delays = receive_retry_delays(a.process.lines[mark:])
    assert delays[:3] == sorted(delays[:3]) and delays[2] > delays[0]  # backing off, not hammering
    assert not world.ledger.events(request.run_id, "term")  # the recipe ran on through all of it

    for proxy in (gms, sqs):
        proxy.set_mode(Mode.PASS)
    world.open_gate(request)
    assert world.wait_status(request, {"SUCCESS"}, timeout_s=90)["status"] == "SUCCESS"
    wait_until(lambda: world.queue_counts() == (0, 0), 90, "the message to be deleted")
    assert len(world.ledger.events(request.run_id, "start")) == 1

    for proxy in (gms, sqs):  # nothing answers any more, and yet a stop is honoured
        proxy.set_mode(Mode.STALL)
    a.signal(signal.SIGTERM)
    assert a.wait(60) == 0
    assert not a.count("did not stop")
