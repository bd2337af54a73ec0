"""Lease: refresh timing, expiry, parsing of a listExecutorConfigs entry, no secrets in reprs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from executor.datahub.lease import Lease, parse_instant
from executor.errors import BadInputError

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
ENTRY = {
    "executorId": "default",
    "region": "us-east-1",
    "queueUrl": "http://127.0.0.1:9/123456789012/default",
    "accessKeyId": "ASIAEXAMPLE0000000000",
    "secretKeyId": "the-secret-access-key",
    "sessionToken": "the-session-token",
    "expiration": "2030-01-01T13:00:00Z",
}


def test_parses_an_executor_config_entry() -> None:
    lease = Lease.from_executor_config(ENTRY, issued_at=T0)
    assert lease.pool_id == "default" and lease.region == "us-east-1"
    assert lease.secret_access_key == "the-secret-access-key"
    assert lease.expiration == T0 + timedelta(hours=1)
    assert lease.issued_at == T0


def test_repr_and_str_never_show_secrets() -> None:
    lease = Lease.from_executor_config(ENTRY, issued_at=T0)
    for shown in (repr(lease), str(lease), f"{lease}"):
        assert "the-secret-access-key" not in shown and "the-session-token" not in shown
        assert "default" in shown


def test_refresh_45_minutes_after_issue_for_an_hour_lease() -> None:
    lease = Lease.from_executor_config(ENTRY, issued_at=T0)
    assert lease.refresh_at() == T0 + timedelta(minutes=45)


def test_refresh_5_minutes_before_expiry_for_a_short_lease() -> None:
    lease = Lease.from_executor_config({**ENTRY, "expiration": "2030-01-01T12:20:00+00:00"}, issued_at=T0)
    assert lease.refresh_at() == T0 + timedelta(minutes=15)
    assert lease.refresh_at(refresh_after_s=60, before_expiry_s=300) == T0 + timedelta(minutes=1)


def test_seconds_left_and_expired() -> None:
    lease = Lease.from_executor_config(ENTRY, issued_at=T0)
    assert lease.seconds_left(T0) == 3600
    assert not lease.expired(T0 + timedelta(minutes=59))
    assert lease.expired(T0 + timedelta(hours=1))
    assert lease.seconds_left(T0 + timedelta(hours=2)) == -3600


@pytest.mark.parametrize("missing", ["executorId", "queueUrl", "region", "accessKeyId", "secretKeyId",
                                     "sessionToken", "expiration"])
def test_a_missing_field_is_named_without_values(missing: str) -> None:
    entry = {k: v for k, v in ENTRY.items() if k != missing}
    with pytest.raises(BadInputError) as info:
        Lease.from_executor_config(entry, issued_at=T0)
    assert missing in str(info.value)
    assert "the-secret-access-key" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01T13:00:00Z", T0 + timedelta(hours=1)),
        ("2030-01-01T14:00:00+01:00", T0 + timedelta(hours=1)),
        ("2030-01-01T13:00:00", T0 + timedelta(hours=1)),
        ("2030-01-01T13:00:00.250Z", T0 + timedelta(hours=1, milliseconds=250)),
        (int((T0 + timedelta(hours=1)).timestamp()), T0 + timedelta(hours=1)),
        (int((T0 + timedelta(hours=1)).timestamp() * 1000), T0 + timedelta(hours=1)),
    ],
)
def test_parse_instant_forms(value: object, expected: datetime) -> None:
    assert parse_instant(value) == expected


@pytest.mark.parametrize("value", ["tomorrow", "", None, True, [], "2030-13-01T00:00:00Z"])
def test_parse_instant_rejects_garbage(value: object) -> None:
    with pytest.raises(BadInputError):
        parse_instant(value, "expiration")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(BadInputError):
        Lease("p", "http://h/q", "r", "a", "s", "t", datetime(2030, 1, 1), T0)
