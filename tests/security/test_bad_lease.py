"""A bad lease is bad input: "no lease: ..." in readiness, retried, and nothing crashes (issue 10 point 8).

Every field of a ``listExecutorConfigs`` entry is checked where the lease is built; hostile
values of each are refused with a message that names the field, never its value, and
``endpoint_for`` raises nothing but ``BadInputError`` whatever it is given. End to end, a real
executor with two pools, whose control plane hands one of them ``queueUrl:
file:///etc/passwd``: that pool says why it is not ready and keeps asking, the other pool runs
its requests to SUCCESS meanwhile, nothing crashes, and once the lease is good again the first
pool leases and polls.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from executor.datahub.lease import Lease
from executor.errors import BadInputError
from executor.queue.sqs import endpoint_for
from tests.faults.harness import FaultWorld, wait_until
from tests.faults.ledger import make_venv_root
from tests.faults.observed import observed

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
GOOD = {
    "executorId": "default",
    "region": "us-east-1",
    "queueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/default",
    "accessKeyId": "ASIAEXAMPLEEXAMPLE00",
    "secretKeyId": "secret/Key+value=",
    "sessionToken": "session-token-value",
    "expiration": "2030-01-01T13:00:00Z",
}
HOSTILE = [
    ("queueUrl", "file:///etc/passwd"),
    ("queueUrl", "http://sqs.example.com/123456789012/default"),  # plain http off loopback
    ("queueUrl", "https://user:pw@sqs.us-east-1.amazonaws.com/123456789012/default"),
    ("queueUrl", "https://sqs.us-east-1.amazonaws.com/123456789012/default?x=1"),
    ("queueUrl", "https://sqs.us-east-1.amazonaws.com/../../etc/passwd"),
    ("queueUrl", "https://sqs.us-west-2.amazonaws.com/123456789012/default"),  # another region
    ("queueUrl", "https://evil.amazonaws.com/123456789012/default"),
    ("queueUrl", "http://[::1/123456789012/default"),
    ("queueUrl", "http://127.0.0.1:99999/123456789012/default"),
    ("queueUrl", "https://sqs.us-east-1.amazonaws.com/1/default\r\nX: y"),
    ("queueUrl", "https://h/" + "a" * 3000),
    ("region", "us-east-1; rm -rf /"),
    ("region", "../../x"),
    ("accessKeyId", "AKIA"),
    ("accessKeyId", "ASIA EXAMPLE EXAMPLE"),
    ("secretKeyId", "line\r\nbreak"),
    ("sessionToken", "x" * 20000),
    ("expiration", "tomorrow"),
    ("expiration", "2029-01-01T00:00:00Z"),  # expired before it was issued
    ("expiration", 10**30),
    ("queueUrl", 42),
    ("accessKeyId", None),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_a_hostile_field_is_refused_naming_the_field_only(field: str, value: object) -> None:
    with pytest.raises(BadInputError) as raised:
        Lease.from_executor_config({**GOOD, field: value}, issued_at=T0)
    message = str(raised.value)
    assert field in message or "expiration" in message
    if isinstance(value, str) and len(value) > 8:
        assert value not in message


def test_good_entries_pass_including_a_local_control_plane() -> None:
    assert Lease.from_executor_config(GOOD, issued_at=T0).queue_url == GOOD["queueUrl"]
    local = {**GOOD, "queueUrl": "http://127.0.0.1:4566/123456789012/default"}
    assert Lease.from_executor_config(local, issued_at=T0).region == "us-east-1"
    named = {**GOOD, "queueUrl": "http://controlplane:8080/123456789012/default.fifo"}
    with pytest.raises(BadInputError, match="plain http"):
        Lease.from_executor_config(named, issued_at=T0)
    assert Lease.from_executor_config(named, issued_at=T0, http_hosts=("controlplane",))


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "", "http://", "http://[::1", "http://h:99999/x", "\x00", "ftp://h/q",
    "http://[fe80::1%25eth0]:1/x", "//h/q", "http://h:-1/x", "https://" + "é" * 50 + "/q",
])
def test_endpoint_for_raises_only_bad_input(url: str) -> None:
    try:
        endpoint_for(url)
    except BadInputError as exc:
        assert url not in str(exc) or not url


def test_endpoint_for_keeps_host_and_port_only() -> None:
    assert endpoint_for("http://127.0.0.1:4566/1/q") == "http://127.0.0.1:4566"
    assert endpoint_for("http://[::1]:4566/1/q") == "http://[::1]:4566"
    assert endpoint_for("https://sqs.us-east-1.amazonaws.com/1/q") is None


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultWorld]:
    fault_world = FaultWorld(tmp_path, make_venv_root(tmp_path / "venvs"), request.node.name)
    yield fault_world
    fault_world.close(failed=True)  # prints the executors' last log lines; shown only on failure


@pytest.mark.slow
def test_a_bad_lease_for_one_pool_leaves_the_other_running(world: FaultWorld) -> None:
    cp = world.start_cp(pools=("default", "other"))
    cp.lease_overrides["other"] = {"queueUrl": "file:///etc/passwd"}
    obs = observed(world, pools=("default", "other"))
    wait_until(lambda: "no lease" in obs.pool_reason("other") and "queueUrl" in obs.pool_reason("other"),
               60, "the bad pool to say why it has no lease")
    assert "/etc/passwd" not in obs.pool_reason("other")

    requests = [world.submit(), world.submit()]
    for request in requests:
        world.open_gate(request)
    for request in requests:
        assert world.wait_status(request, {"SUCCESS", "FAILURE"}, timeout_s=90)["status"] == "SUCCESS"
    wait_until(lambda: obs.executor.count("listExecutorConfigs failed") >= 3, 60, "the bad pool to retry")
    assert obs.executor.running
    assert obs.healthz()[0] == 200
    assert obs.executor.count("crashed") == 0 and obs.executor.count("failed to start") == 0

    cp.lease_overrides.clear()  # GMS hands out a good lease again
    wait_until(lambda: obs.pool_reason("other") == "leased and polling", 120, "the pool to lease and poll")
