"""The DataHub secret store: secrets kept (encrypted) by GMS, read with ``getSecretValues``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class SecretSource(Protocol):
    """The part of ``GmsClient`` this store needs."""

    def get_secret_values(self, names: Sequence[str]) -> dict[str, str]: ...


class DataHubStore:
    """Asks GMS; GMS silently omits names it does not know, and so does this store."""

    name = "datahub"

    def __init__(self, gms: SecretSource) -> None:
        self._gms = gms

    def get(self, names: Sequence[str]) -> dict[str, str]:
        """Values GMS holds for ``names`` (needs the MANAGE_SECRETS privilege)."""
        if not names:
            return {}
        return self._gms.get_secret_values(list(names))
