"""The lease: a pool's queue URL plus short-lived AWS credentials, as GMS hands them out.

GMS answers ``listExecutorConfigs`` with one entry per pool; each entry carries
temporary STS credentials (about an hour) for that pool's SQS queue. The executor
never talks to STS itself: it asks GMS again before the credentials run out.
``Lease`` is the immutable value that travels from the CredentialLeaser to the
QueuePoller; its repr never shows the secret key or the session token.

A lease is outside input like any other: every field is checked where it is built (an
http(s) SQS queue URL, plain http only on loopback or a host the caller vouches for; an AWS
region; credentials of sane shape, without characters that could break an HTTP header; a
parseable expiration), and a bad one is a ``BadInputError`` that names the field, never its
value. The leaser treats that like any failed refresh: "no lease: ..." and a retry later.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

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
MAX_QUEUE_URL_CHARS = 2048
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
"""An AWS region name (``us-east-1``, ``cn-north-1``, ``us-gov-west-1``)."""
_ACCESS_KEY = re.compile(r"^[A-Za-z0-9]{16,128}$")
_SECRET = re.compile(r"^[\x21-\x7e]{1,16384}$")
"""Printable ASCII without spaces: what AWS issues, and nothing that could break a header."""
_QUEUE_PATH = re.compile(r"^/[0-9A-Za-z_-]{1,64}/[A-Za-z0-9_-]{1,80}(\.fifo)?$")
"""``/<account>/<queue name>``: SQS names are 1-80 letters, digits, ``-`` and ``_``."""
_AWS_SQS_HOST = re.compile(r"^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


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
    def from_executor_config(
        cls, entry: Mapping[str, object], issued_at: datetime | None = None, http_hosts: Iterable[str] = (),
        *, refuse_expired: bool = True,
    ) -> Lease:
        """Build a lease from one ``listExecutorConfigs`` entry.

        ``secretKeyId`` holds the AWS *secret access key* (DataHub's field name). A queue URL
        may use plain http only on loopback or on one of ``http_hosts`` (GMS's own host, when
        it is a local control plane). Raises ``BadInputError`` naming the field that is
        missing or malformed, never its value; an entry that expires before it was issued is
        refused too, unless ``refuse_expired`` is False (``doctor`` reports the expiry itself,
        with the clock advice, and still tries SQS with the lease).
        """
        values = {key: _text(entry, key) for key in _FIELDS}
        issued = issued_at or utcnow()
        expiration = parse_instant(entry.get("expiration"), "executor config expiration")
        if refuse_expired and expiration <= issued:
            late = (issued - expiration).total_seconds()
            raise BadInputError(
                f"executor config expiration lies {late:.0f}s before it was received "
                "(or this host's clock is ahead)"
            )
        _check_fields(values, http_hosts)
        return cls(
            pool_id=values["executorId"],
            queue_url=values["queueUrl"],
            region=values["region"],
            access_key_id=values["accessKeyId"],
            secret_access_key=values["secretKeyId"],
            session_token=values["sessionToken"],
            expiration=expiration,
            issued_at=issued,
        )


_FIELDS = ("executorId", "queueUrl", "region", "accessKeyId", "secretKeyId", "sessionToken")


def _text(entry: Mapping[str, object], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"executor config lacks a non-empty string {key!r}")
    return value.strip()


def _check_fields(values: Mapping[str, str], http_hosts: Iterable[str]) -> None:
    check_queue_url(values["queueUrl"], values["region"])
    check_plain_http(values["queueUrl"], http_hosts)
    if not REGION.match(values["region"]):
        raise BadInputError("executor config region is not an AWS region name like us-east-1")
    if not _ACCESS_KEY.match(values["accessKeyId"]):
        raise BadInputError("executor config accessKeyId is not 16-128 letters and digits")
    for label in ("secretKeyId", "sessionToken"):
        if not _SECRET.match(values[label]):
            raise BadInputError(
                f"executor config {label} is too long or holds spaces or control characters"
            )


def check_queue_url(url: str, region: str | None = None) -> None:
    """Raise ``BadInputError`` unless ``url`` is a well-formed http(s) SQS queue URL.

    An AWS host must be ``sqs.<region>.amazonaws.com`` of the lease's own region (botocore
    signs for that region); any other host is an SQS-compatible endpoint such as a local
    control plane. Never echoes the URL: it came from outside.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_QUEUE_URL_CHARS:
        raise BadInputError("executor config queueUrl is missing or longer than 2048 characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
        raise BadInputError("executor config queueUrl holds spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        host, _port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise BadInputError("executor config queueUrl is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise BadInputError("executor config queueUrl is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise BadInputError("executor config queueUrl must not carry user info, a query or a fragment")
    if not _QUEUE_PATH.match(parts.path):
        raise BadInputError("executor config queueUrl's path is not /<account>/<queue name>")
    aws = _AWS_SQS_HOST.match(host)
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn")) and aws is None:
        raise BadInputError("executor config queueUrl is on AWS but not an sqs.<region>.amazonaws.com host")
    if aws is not None and region is not None and aws.group(1) != region:
        raise BadInputError("executor config queueUrl's region differs from the lease's region")


def check_plain_http(url: str, allowed_hosts: Iterable[str] = ()) -> None:
    """Refuse a plain-http queue URL unless its host is loopback or one of ``allowed_hosts``:
    SQS calls carry signed credentials, so they leave the host only over TLS."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise BadInputError("executor config queueUrl is not a URL") from None
    if parts.scheme != "http" or is_loopback(host) or host in {h.lower() for h in allowed_hosts if h}:
        return
    raise BadInputError(
        "executor config queueUrl uses plain http on a host that is neither loopback nor GMS's own"
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
