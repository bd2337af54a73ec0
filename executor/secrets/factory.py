"""Builds the secret stores a pool's configuration names, in order."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from executor.errors import ConfigError
from executor.hardening import host_aws_credentials
from executor.secrets.aws_sm import AwsSecretsManagerStore
from executor.secrets.base import SecretStore
from executor.secrets.datahub_store import DataHubStore, SecretSource
from executor.secrets.env import EnvStore
from executor.secrets.file import FileStore

STORE_KINDS = ("env", "file", "datahub", "aws-secrets-manager")


class _AwsSettings(Protocol):
    @property
    def region(self) -> str | None: ...
    @property
    def prefix(self) -> str: ...


class StoreSettings(Protocol):
    """The fields of the pool's ``secrets`` configuration the stores need."""

    @property
    def file_dir(self) -> Path: ...
    @property
    def aws(self) -> _AwsSettings: ...


def build_store(
    kind: str,
    settings: StoreSettings,
    gms: SecretSource | None,
    proxies: Mapping[str, str] | None = None,
) -> SecretStore:
    """The store of ``kind`` ("env", "file", "datahub", "aws-secrets-manager")."""
    if kind == "env":
        env = getattr(settings, "env", None)
        return EnvStore(names=getattr(env, "names", ()), prefixes=getattr(env, "prefixes", ()))
    if kind == "file":
        return FileStore(settings.file_dir)
    if kind == "datahub":
        if gms is None:
            raise ConfigError("secret stores", ["the datahub store needs a GMS client"])
        return DataHubStore(gms)
    if kind == "aws-secrets-manager":
        return AwsSecretsManagerStore(settings.aws.region, settings.aws.prefix, proxies=proxies,
                                      credentials=host_aws_credentials())
    raise ConfigError("secret stores", [f"unknown store {kind!r}; expected one of {', '.join(STORE_KINDS)}"])
