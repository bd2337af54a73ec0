"""DataHub secrets of the control plane: create, update, delete, list, and read values.

Secret URNs are ``urn:li:dataHubSecret:<name>``, as in DataHub. Values are sealed by
``crypto.SecretBox`` before they reach the database and never appear in logs or errors.
``values`` omits names that do not exist, exactly as ``getSecretValues`` does.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from loguru import logger

from executor.errors import BadInputError
from executor.local.controlplane.crypto import PLAIN, SecretBox
from executor.local.controlplane.storage import SealedSecret, Storage

SECRET_URN_PREFIX = "urn:li:dataHubSecret:"  # noqa: S105 (a URN prefix, not a password)
NAME_PATTERN = re.compile(r"^\w{1,200}$")
"""Recipes reference secrets as ``${NAME}`` with ``\\w+`` names; others could never be used."""


@dataclass(frozen=True)
class SecretInfo:
    """What may be listed about a secret: never its value."""

    urn: str
    name: str
    description: str | None


def secret_urn(name: str) -> str:
    """The URN of the secret called ``name``."""
    return SECRET_URN_PREFIX + name


def name_from_urn(urn: str) -> str:
    """The name inside a secret URN; BadInputError for anything else."""
    if not urn.startswith(SECRET_URN_PREFIX):
        raise BadInputError(f"not a secret urn: {urn!r}")
    return urn[len(SECRET_URN_PREFIX) :]


class Secrets:
    """Secret management over ``Storage``, sealed with the configured key (if any)."""

    def __init__(self, storage: Storage, key: bytes | None) -> None:
        self._storage = storage
        salt = storage.get_meta("secret_salt")
        if salt is None:
            salt = base64.b64encode(os.urandom(16)).decode()
            storage.set_meta("secret_salt", salt)
        self._box = SecretBox(key, base64.b64decode(salt))
        if key is not None:
            self._check_key()

    @property
    def encrypted(self) -> bool:
        """True when values are sealed with a key, False when stored in plain text."""
        return self._box.scheme != PLAIN

    def _check_key(self) -> None:
        check = self._storage.get_meta("secret_key_check")
        if check is None:
            self._storage.set_meta("secret_key_check", base64.b64encode(self._box.check_value()).decode())
        else:
            self._box.verify(base64.b64decode(check))
        for row in self._storage.get_secrets():
            if row.scheme == PLAIN:
                value = self._box.open(row.name, row.scheme, row.sealed)
                self._put(row.name, value, row.description, create=False)
                logger.info("secret {} re-stored encrypted", row.name)

    def _put(self, name: str, value: str, description: str | None, *, create: bool) -> None:
        sealed = SealedSecret(name, description, self._box.scheme, self._box.seal(name, value))
        self._storage.put_secret(sealed, create=create)

    def create(self, name: str, value: str, description: str | None = None) -> str:
        """Store a new secret; returns its URN. BadInputError if the name is taken or invalid."""
        _check_name(name)
        try:
            self._put(name, value, description, create=True)
        except ValueError:
            raise BadInputError(f"secret {name!r} already exists") from None
        return secret_urn(name)

    def update(self, urn: str, name: str, value: str, description: str | None = None) -> str:
        """Replace the value (and description) of an existing secret; returns its URN."""
        if name_from_urn(urn) != name:
            raise BadInputError("the secret urn and name do not match; renaming is not supported")
        try:
            self._put(name, value, description, create=False)
        except KeyError:
            raise BadInputError(f"no secret {name!r}") from None
        return urn

    def delete(self, urn: str) -> str:
        """Remove a secret (no error if it does not exist, as in DataHub); returns the URN."""
        self._storage.delete_secret(name_from_urn(urn))
        return urn

    def search(self, query: str | None = None) -> list[SecretInfo]:
        """Secrets whose name or description contains ``query`` (case-insensitive)."""
        needle = (query or "").strip().lower()
        if needle == "*":
            needle = ""
        return [
            SecretInfo(secret_urn(s.name), s.name, s.description)
            for s in self._storage.get_secrets()
            if needle in s.name.lower() or needle in (s.description or "").lower()
        ]

    def values(self, names: list[str]) -> dict[str, str]:
        """Plain values of the named secrets that exist; missing names are left out."""
        return {s.name: self._box.open(s.name, s.scheme, s.sealed) for s in self._storage.get_secrets(names)}


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise BadInputError("a secret name must be 1-200 letters, digits or underscores")
