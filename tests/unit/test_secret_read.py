"""A Task reads its recipe's secrets itself (``executor.pool.resolver``), on its own thread.

The pool's configured stores in order, a later value winning; a missing name answered by its
name; a store's failure answered, never raised (the Task's actor must not crash for it), and
retryable only when a store could not be reached. The AWS Secrets Manager store (a boto3
client) is made once per pool and shared by its Tasks; the others per read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from executor.config import ExecutorConfig
from executor.datahub.gms import GmsClient
from executor.errors import TransportError
from executor.pool import resolver
from executor.pool.context import PoolContext
from executor.pool.messages import SecretsFailed, SecretsResolved
from executor.pool.resolver import pool_stores, read_secrets


def _pool(tmp_path: Path, stores: tuple[str, ...]) -> PoolContext:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    config = ExecutorConfig.model_validate({
        "gms": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path / "state"),
        "pools": [{"id": "default", "secrets": {"stores": list(stores), "file_dir": str(secrets)}}],
    })
    return PoolContext(config=config, pool=config.pools[0], token="test-token", instance_id="test")


class _Store:
    """A stand-in store: fixed values, or an error raised on every read."""

    name = "stand-in"

    def __init__(self, values: dict[str, str] | None = None, error: Exception | None = None) -> None:
        self.values, self.error = values or {}, error

    def get(self, names: Sequence[str]) -> dict[str, str]:
        if self.error is not None:
            raise self.error
        return {name: self.values[name] for name in names if name in self.values}


def _gms(pool: PoolContext) -> GmsClient:
    return pool.new_gms()  # never called here: no datahub store in these pools


def test_values_come_from_the_stores_in_order_and_a_missing_name_is_named(tmp_path: Path) -> None:
    pool = _pool(tmp_path, ("file",))
    (tmp_path / "secrets" / "DB_PASSWORD").write_text("from-the-file")
    answer = read_secrets(pool, _gms(pool), ("DB_PASSWORD",))
    assert answer == SecretsResolved({"DB_PASSWORD": "from-the-file"})
    missing = read_secrets(pool, _gms(pool), ("DB_PASSWORD", "NOWHERE"))
    assert isinstance(missing, SecretsFailed) and missing.missing == ("NOWHERE",)
    assert not missing.retryable


@pytest.mark.parametrize(("error", "retryable"), [
    (TransportError("connection refused"), True),
    (RuntimeError("the store broke"), False),
])
def test_a_failing_store_is_answered_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, retryable: bool
) -> None:
    pool = _pool(tmp_path, ("file",))
    monkeypatch.setattr(resolver, "build_store", lambda *_a, **_k: _Store(error=error))
    answer = read_secrets(pool, _gms(pool), ("DB_PASSWORD",))
    assert isinstance(answer, SecretsFailed) and answer.retryable is retryable
    assert ("could not be reached" if retryable else "RuntimeError: the store broke") in answer.error


def test_the_aws_store_is_made_once_per_pool_and_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def build(kind: str, *_args: Any, **_kwargs: Any) -> _Store:
        made.append(kind)
        return _Store({"TOKEN": f"from-{kind}"})

    pool = _pool(tmp_path, ("file", "aws-secrets-manager"))
    monkeypatch.setattr(resolver, "build_store", build)
    first, second = pool_stores(pool, _gms(pool)), pool_stores(pool, _gms(pool))
    assert made == ["file", "aws-secrets-manager", "file"]  # the AWS one once, the cheap one per read
    assert first[1] is second[1]
    answer = read_secrets(pool, _gms(pool), ("TOKEN",))
    assert answer == SecretsResolved({"TOKEN": "from-aws-secrets-manager"})  # the later store wins
