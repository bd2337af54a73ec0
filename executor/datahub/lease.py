"""The lease: a pool's queue URL plus short-lived AWS credentials, as GMS hands them out.

GMS answers ``listExecutorConfigs`` with one entry per pool; each entry carries
temporary STS credentials (about an hour) for that pool's SQS queue. The executor
never talks to STS itself: it asks GMS again before the credentials run out.
``Lease`` is the immutable value that travels from the CredentialLeaser to the
QueuePoller; its repr never shows the secret key or the session token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from executor.errors import BadInputError

REFRESH_AFTER_S = 2700
"""DataHub's docs: refresh every 45 minutes."""
REFRESH_BEFORE_EXPIRY_S = 300
"""DataHub's client: refresh when less than 5 minutes remain."""
REFRESH_AT_LIFETIME = 0.75
"""Our addition for short leases: refresh once 75% of the lease's lifetime has passed.

Without it a lease shorter than 5 minutes would be "due" the moment it is issued, and the
executor would ask GMS for a new one in a tight loop.
"""


def utcnow() -> datetime:
    """The current instant, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Lease:
    """A pool's queue and the temporary credentials that may use it until ``expiration``."""

    pool_id: str
    queue_url: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime
    issued_at: datetime

    def __post_init__(self) -> None:
        for name in ("expiration", "issued_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise BadInputError(f"lease {name} must be a timezone-aware datetime")

    def refresh_at(
        self,
        refresh_after_s: float = REFRESH_AFTER_S,
        before_expiry_s: float = REFRESH_BEFORE_EXPIRY_S,
        at_lifetime: float = REFRESH_AT_LIFETIME,
    ) -> datetime:
        """When to ask for a new lease: ``refresh_after_s`` after issue or ``before_expiry_s``
        before expiry, whichever comes first (DataHub's rules: 45 minutes into a one-hour lease).

        For short leases two bounds keep this sane: the before-expiry rule never fires before
        half of the lifetime (a lease shorter than ``before_expiry_s`` would otherwise be due
        at once, over and over), and nothing waits past ``at_lifetime`` of it.
        """
        lifetime = max(0.0, (self.expiration - self.issued_at).total_seconds())
        by_age = self.issued_at + timedelta(seconds=refresh_after_s)
        by_expiry = max(
            self.expiration - timedelta(seconds=before_expiry_s),
            self.issued_at + timedelta(seconds=lifetime / 2),
        )
        by_lifetime = self.issued_at + timedelta(seconds=lifetime * at_lifetime)
        return min(by_age, by_expiry, by_lifetime)

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds until the credentials expire (negative once expired)."""
        return (self.expiration - (now or utcnow())).total_seconds()

    def expired(self, now: datetime | None = None) -> bool:
        """True once the credentials are past their expiration."""
        return self.seconds_left(now) <= 0

    @classmethod
    def from_executor_config(cls, entry: Mapping[str, object], issued_at: datetime | None = None) -> Lease:
        """Build a lease from one ``listExecutorConfigs`` entry.

        ``secretKeyId`` holds the AWS *secret access key* (DataHub's field name). Raises
        ``BadInputError`` naming the field that is missing or malformed, never its value.
        """
        values = {key: _text(entry, key) for key in _FIELDS}
        return cls(
            pool_id=values["executorId"],
            queue_url=values["queueUrl"],
            region=values["region"],
            access_key_id=values["accessKeyId"],
            secret_access_key=values["secretKeyId"],
            session_token=values["sessionToken"],
            expiration=parse_instant(entry.get("expiration"), "expiration"),
            issued_at=issued_at or utcnow(),
        )


_FIELDS = ("executorId", "queueUrl", "region", "accessKeyId", "secretKeyId", "sessionToken")


def _text(entry: Mapping[str, object], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"executor config lacks a non-empty string {key!r}")
    return value.strip()


def parse_instant(value: object, name: str = "instant") -> datetime:
    """An ISO-8601 string (``Z`` allowed) or epoch seconds/milliseconds, as an aware UTC datetime.

    A string without a zone is taken as UTC, as AWS writes it.
    """
    if isinstance(value, bool):
        raise BadInputError(f"{name} is not a timestamp")
    if isinstance(value, int | float):
        seconds = value / 1000.0 if value > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise BadInputError(f"{name} is out of range") from None
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"{name} is missing or not a string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadInputError(f"{name} is not an ISO-8601 instant") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
