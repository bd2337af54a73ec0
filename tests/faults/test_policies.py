"""The rules the fault tests rely on, checked without processes: lease refresh times,
supervision policies that can escalate, the fault switch, poison verdicts, live RUNNING."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from executor.backoff import Backoff
from executor.datahub.lease import Lease
from executor.pool.outcome import running_elsewhere
from executor.pool.poison import DELETE_AFTER_RECEIVES, PoisonPolicy
from executor.pool.supervisor import POOL_POLICY
from executor.service import ROOT_POLICY
from executor.supervision.faults import FaultRule, FaultSwitch, parse_rules
from executor.supervision.spec import SupervisorPolicy

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def lease(lifetime_s: float) -> Lease:
    return Lease("default", "http://q", "us-east-1", "AKIA", "secret", "token",
                 expiration=T0 + timedelta(seconds=lifetime_s), issued_at=T0)


@pytest.mark.parametrize(
    ("lifetime_s", "refresh_after_s"),
    [
        (3600, 45 * 60),  # DataHub's one-hour lease: 45 minutes, as its docs say
        (20 * 60, 15 * 60),  # 5 minutes before expiry (also 3/4 of the lifetime)
        (10 * 60, 5 * 60),  # 5 minutes before expiry is also half the lifetime
        (5 * 60, 150),  # shorter than 5 minutes: not at once, but at half of it
        (60, 30),
        (6, 3),
    ],
)
def test_leases_are_refreshed_between_half_and_three_quarters_of_their_life(
    lifetime_s: float, refresh_after_s: float
) -> None:
    assert lease(lifetime_s).refresh_at() == T0 + timedelta(seconds=refresh_after_s)


def worst_time_to_escalate(policy: SupervisorPolicy) -> float:
    """Seconds of backoff between the first crash and the one that exceeds the intensity,
    each delay at its largest jitter."""
    backoff: Backoff = policy.backoff
    return sum(min(backoff.max_s, backoff.min_s * backoff.factor**n) * (1 + backoff.jitter)
               for n in range(policy.max_restarts))


@pytest.mark.parametrize("policy", [POOL_POLICY, ROOT_POLICY], ids=["pool", "root"])
def test_a_crash_loop_can_exceed_the_restart_intensity(policy: SupervisorPolicy) -> None:
    assert worst_time_to_escalate(policy) < policy.period_s  # else a crash loop never escalates


def test_a_persistent_child_crash_parks_its_pool_in_time() -> None:
    """A child crash loop escalates its pool; four such pool failures make the root park it
    (and give up, exit 3, only if every pool is parked)."""
    pool_escalation = worst_time_to_escalate(POOL_POLICY)
    root_backoff = worst_time_to_escalate(ROOT_POLICY)
    assert (ROOT_POLICY.max_restarts + 1) * pool_escalation + root_backoff < ROOT_POLICY.period_s


def test_a_parked_pool_waits_minutes_not_a_crash_loop() -> None:
    """Long enough not to hammer what keeps failing, growing while it does, bounded."""
    park = ROOT_POLICY.park_backoff
    assert park.min_s >= 60 and park.min_s > ROOT_POLICY.backoff.max_s
    assert park.max_s <= 3600 and park.reset_after_s > park.max_s


def test_fault_rules_parse_and_fire_as_often_as_asked() -> None:
    rules = parse_rules("pool:default/reporter*2, pool:default/poller@ExtendLeases*1 ,root/x")
    assert rules == (
        FaultRule("pool:default/reporter", None, 2),
        FaultRule("pool:default/poller", "ExtendLeases", 1),
        FaultRule("root/x", None, None),
    )
    switch = FaultSwitch(rules)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="injected fault"):
            switch.at_start("root/pool:default/reporter")
    switch.at_start("root/pool:default/reporter")  # the third start succeeds
    switch.at_start("root/pool:default/poller")  # only its messages are faulty
    assert switch.wants_messages("root/pool:default/poller")

    class ExtendLeases:
        pass

    with pytest.raises(RuntimeError):
        switch.on_message("root/pool:default/poller", ExtendLeases())
    switch.on_message("root/pool:default/poller", ExtendLeases())
    for _ in range(3):
        with pytest.raises(RuntimeError):
            switch.at_start("root/x")
    with pytest.raises(ValueError, match="SUFFIX"):
        parse_rules("a*many")


def test_poison_is_logged_once_hidden_briefly_and_deleted_in_the_end() -> None:
    policy = PoisonPolicy(max_visibility_s=10)
    first, again = policy.judge("m1", 1), policy.judge("m1", 2)
    assert (first.log_it, first.delete, first.visibility_s) == (True, False, 1)
    assert (again.log_it, again.delete, again.visibility_s) == (False, False, 2)
    assert policy.judge("m2", 8).visibility_s == 8
    assert policy.judge("m3", 20).visibility_s == 10  # capped by the pool's lease
    last = policy.judge("m1", DELETE_AFTER_RECEIVES)
    assert last.delete and last.log_it


def test_a_running_result_is_live_only_while_fresh() -> None:
    running = {"status": "RUNNING", "startTimeMs": 1_000_000, "durationMs": 5_000}
    assert running_elsewhere(running, 3.0, now=1_006_000) == pytest.approx(1.0)
    assert running_elsewhere(running, 3.0, now=1_009_000) is None  # stale: its executor died
    assert running_elsewhere({**running, "status": "FAILURE"}, 3.0, now=1_006_000) is None
    assert running_elsewhere(None, 3.0) is None
