"""The AWS Secrets Manager store: secrets read with the host's own AWS identity.

Not the leased queue credentials: those may only use the pool's queue. The default boto3
credential chain (instance role, IRSA, env) applies; host keys that ``executor.hardening`` took
out of the environment at start-up are passed in explicitly. Secret ids are ``<prefix><NAME>``.

boto3 and botocore are imported when a store is made or used, not with this module: an executor
without this store (or before its first lookup) never loads them (about 2 MB of imports, more
once a client is made).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from executor.errors import (
    BadInputError,
    ConfigError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)

BATCH_SIZE = 20
"""``BatchGetSecretValue`` accepts at most 20 ids per call."""
_PREFIX = re.compile(r"^[A-Za-z0-9/_+=.@-]*$")
_THROTTLED = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
})
_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                     "InvalidClientTokenId"})
_EXPIRED = frozenset({"ExpiredTokenException", "ExpiredToken", "RequestExpired"})
"""The host's own credentials are refreshed by botocore: an expired one is worth a retry."""


class AwsSecretsManagerStore:
    """Looks ``<prefix><NAME>`` up in AWS Secrets Manager, 20 names per call."""

    name = "aws-secrets-manager"

    def __init__(
        self,
        region: str | None,
        prefix: str = "",
        client: Any = None,
        proxies: Mapping[str, str] | None = None,
        endpoint_url: str | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        if not _PREFIX.match(prefix):
            problem = "prefix may hold only letters, digits and /_+=.@-"
            raise ConfigError("aws-secrets-manager store", [problem])
        self.prefix = prefix
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=5,
                read_timeout=10,
                retries={"mode": "standard", "max_attempts": 3},
                proxies=dict(proxies) if proxies else None,
            )
            keys = dict(credentials or {})
            if not (keys.get("AWS_ACCESS_KEY_ID") and keys.get("AWS_SECRET_ACCESS_KEY")):
                keys = {}  # incomplete: let boto3's own chain (role, IRSA, files) decide
            client = boto3.client(
                "secretsmanager", region_name=region, config=config, endpoint_url=endpoint_url,
                aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=keys.get("AWS_SESSION_TOKEN") or keys.get("AWS_SECURITY_TOKEN"),
            )
        self._client = client

    def get(self, names: Sequence[str]) -> dict[str, str]:
        """String values of the names that exist; binary secrets must be UTF-8."""
        values: dict[str, str] = {}
        wanted = list(dict.fromkeys(names))
        for start in range(0, len(wanted), BATCH_SIZE):
            chunk = wanted[start : start + BATCH_SIZE]
            by_id = {self.prefix + n: n for n in chunk}
            with _mapped():
                answer = self._client.batch_get_secret_value(SecretIdList=list(by_id))
            for item in answer.get("SecretValues", []):
                name = by_id.get(item.get("Name", "")) or by_id.get(item.get("ARN", ""))
                if name is not None:
                    values[name] = _value(name, item)
            _check_errors(answer.get("Errors", []))
        return values


def _value(name: str, item: dict[str, Any]) -> str:
    if isinstance(item.get("SecretString"), str):
        return str(item["SecretString"])
    try:
        return bytes(item.get("SecretBinary", b"")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"AWS secret {name!r} is binary, not UTF-8 text") from None


def _check_errors(errors: list[dict[str, Any]]) -> None:
    """Not-found ids are simply absent; any other per-secret error is raised (without values)."""
    for error in errors:
        code = str(error.get("ErrorCode", ""))
        if code == "ResourceNotFoundException":
            continue
        raise _error(code, str(error.get("Message", "")), 0)


@contextmanager
def _mapped() -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        info = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        raise _error(str(info.get("Code", "")), str(info.get("Message", "")), status) from None
    except BotoCoreError as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        raise TransportError(f"AWS Secrets Manager unreachable: {reason}") from None


def _error(code: str, message: str, status: int) -> Exception:
    text = f"AWS Secrets Manager: {code or 'HTTP ' + str(status)}: {message[:300]}"
    if code in _THROTTLED or status == 429:
        return ThrottledError(text)
    if code in _DENIED or status == 403:
        return NotAllowedError(text)
    if code in _EXPIRED or code in ("InternalServiceError", "ServiceUnavailable") or status >= 500:
        return TransportError(text)
    return BadInputError(text)
