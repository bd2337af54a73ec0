"""AwsSecretsManagerStore against moto's Secrets Manager over real HTTP on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from executor.errors import ConfigError, NotAllowedError, ThrottledError, TransportError
from executor.secrets import AwsSecretsManagerStore
from executor.secrets.aws_sm import _error


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The host's own AWS identity, as the default credential chain finds it (dummy for moto)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "host-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def prefix(moto_endpoint: str, aws_env: None) -> Iterator[str]:
    """A unique prefix with a few secrets stored under it."""
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    prefix = f"dh-{uuid.uuid4().hex[:8]}/"
    client.create_secret(Name=prefix + "DB_PASS", SecretString="pa55")
    client.create_secret(Name=prefix + "BLOB", SecretBinary=b"bin-value")
    for i in range(25):
        client.create_secret(Name=f"{prefix}MANY_{i}", SecretString=f"v{i}")
    yield prefix


def test_reads_prefixed_secrets_and_omits_unknown(moto_endpoint: str, prefix: str) -> None:
    store = AwsSecretsManagerStore("us-east-1", prefix, endpoint_url=moto_endpoint)
    assert store.get(["DB_PASS", "BLOB", "NOT_THERE"]) == {"DB_PASS": "pa55", "BLOB": "bin-value"}


def test_more_names_than_one_batch(moto_endpoint: str, prefix: str) -> None:
    store = AwsSecretsManagerStore("us-east-1", prefix, endpoint_url=moto_endpoint)
    names = [f"MANY_{i}" for i in range(25)]
    assert store.get(names) == {f"MANY_{i}": f"v{i}" for i in range(25)}


def test_unreachable_endpoint_is_a_transport_error(aws_env: None, closed_port: int) -> None:
    store = AwsSecretsManagerStore("us-east-1", endpoint_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(TransportError):
        store.get(["X"])


def test_prefix_is_validated() -> None:
    with pytest.raises(ConfigError):
        AwsSecretsManagerStore("us-east-1", "bad prefix!", client=object())


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [("ThrottlingException", 400, ThrottledError), ("AccessDeniedException", 400, NotAllowedError),
     ("InternalServiceError", 500, TransportError), ("ExpiredTokenException", 400, TransportError)],
)
def test_error_mapping(code: str, status: int, expected: type[Exception]) -> None:
    assert type(_error(code, "m", status)) is expected
