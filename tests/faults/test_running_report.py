"""When RUNNING goes out with ``running_after_s`` set (0, the default, sends it at admission):
once a run has lasted that long (at most one progress interval). A run that ends sooner reports
only its result (one GMS write, not two); one that lasts reports RUNNING before its result and
never after it. The first RUNNING is the Task's own write; the Reporter sends it when that
write fails (``executor.pool.first_running``)."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from executor.local.controlplane.http_base import LoopbackServer
from tests.faults.harness import FaultWorld, wait_until
from tests.faults.slowgms import _Handler as Relay

FAULTS = "REMOTE_EXECUTOR_TEST_FAULTS"


class RefusingGms(LoopbackServer):
    """A relay to the control plane's GMS (``SlowGms``'s, holding nothing) that answers HTTP 503
    to the first write of a RUNNING result and passes everything else."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _RefuseFirst, "refusing-gms")
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.running_writes = 0
        self.lock = threading.Lock()


class _RefuseFirst(Relay):
    server: RefusingGms  # type: ignore[assignment]

    def do_POST(self) -> None:
        body = self.read_body()
        if body is None:
            return
        if "ingestProposal" in self.path and b"RUNNING" in body:
            with self.server.lock:
                self.server.running_writes += 1
                refuse = self.server.running_writes == 1
            if refuse:
                self.send_json(503, {"message": "refused once by the test"})
                return
        self._relay(body)


def statuses(world: FaultWorld, urn: str) -> list[str]:
    return [str(r.get("status")) for r in world.history(urn)]


def test_a_run_that_ends_before_running_after_s_reports_only_its_result(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", running_after_s=60, progress_interval_s=60)
    quick = world.submit()
    world.open_gate(quick)  # the recipe ends as soon as it has started
    assert world.wait_status(quick)["status"] == "SUCCESS"
    assert statuses(world, quick.urn) == ["SUCCESS"]
    assert len(world.ledger.events(quick.run_id, "start")) == 1
    wait_until(lambda: world.queue_counts() == (0, 0), 30, "the message to be deleted")
    assert a.running


def test_a_run_that_lasts_reports_running_before_its_result(world: FaultWorld) -> None:
    world.start_cp()
    a = world.executor("a", running_after_s=5, progress_interval_s=10)
    lasting = world.submit()
    world.ledger.wait(lasting.run_id, "start")
    # The recipe has its input, so it was admitted at most a moment ago: no RUNNING yet (with
    # the default 0 it would have gone out at admission, before the recipe's input).
    assert statuses(world, lasting.urn) == []
    world.wait_status(lasting, {"RUNNING"})  # the gate is shut: it lasts until we open it
    world.open_gate(lasting)
    assert world.wait_status(lasting)["status"] == "SUCCESS"
    seen = statuses(world, lasting.urn)
    assert seen[0] == "RUNNING" and seen[-1] == "SUCCESS"
    assert "RUNNING" not in seen[seen.index("SUCCESS"):]
    assert a.running


def test_a_run_that_ends_at_once_reports_running_first(world: FaultWorld) -> None:
    """``running_after_s`` 0: the Task writes the first RUNNING at admission, and hands the
    result to the Reporter only after that write returned; GMS sees them in that order."""
    world.start_cp()
    a = world.executor("a", progress_interval_s=60)
    quick = world.submit()
    world.open_gate(quick)
    assert world.wait_status(quick)["status"] == "SUCCESS"
    assert statuses(world, quick.urn) == ["RUNNING", "SUCCESS"]
    assert a.running


def test_the_first_running_is_written_by_the_task_itself(world: FaultWorld) -> None:
    """The Reporter crashes on the first ``Progress`` it handles: none reaches it, and the first
    RUNNING is in GMS all the same (the Task wrote it); the result follows it."""
    world.start_cp()
    a = world.executor("a", progress_interval_s=60, env={FAULTS: "pool:default/reporter@Progress*1"})
    request = world.submit()
    world.wait_status(request, {"RUNNING"})
    world.open_gate(request)
    assert world.wait_status(request)["status"] == "SUCCESS"
    assert statuses(world, request.urn) == ["RUNNING", "SUCCESS"]
    assert not a.count("on handling Progress")  # the Reporter never got it
    assert a.running


def test_a_first_running_gms_refused_is_sent_by_the_reporter(world: FaultWorld) -> None:
    """GMS refuses the Task's own write of the first RUNNING (HTTP 503): the Reporter sends it
    at once (no periodic report comes within the run: the interval is 60 s)."""
    cp = world.start_cp()
    gms = RefusingGms(cp.gms_url)
    gms.start()
    world.servers.append(gms)
    a = world.executor("a", gms_url=gms.url, progress_interval_s=60)
    request = world.submit()
    world.wait_status(request, {"RUNNING"})
    assert gms.running_writes == 2  # the Task's, refused, then the Reporter's
    world.open_gate(request)
    assert world.wait_status(request)["status"] == "SUCCESS"
    assert statuses(world, request.urn) == ["RUNNING", "SUCCESS"]
    assert a.running
