"""The secret-store interface, how recipes reference secrets, and resolution over ordered stores.

A store answers only for the names it holds. Stores are consulted in the pool's configured
order and a later store's value wins (DataHub's rule), so a pool can layer, say, Kubernetes
file mounts over the environment and DataHub's own secrets over both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from loguru import logger

from executor.errors import MissingSecretError

SECRET_REFERENCE = re.compile(r"\$\{(\w+)\}")
"""DataHub's pattern: ``${NAME}``. ``${VAR:-default}`` is not a reference (the CLI expands it)."""


@runtime_checkable
class SecretStore(Protocol):
    """Something that can look secrets up by name."""

    name: str
    """Short kind of the store, for logs (never a value)."""

    def get(self, names: Sequence[str]) -> dict[str, str]:
        """Values of the ``names`` this store holds; names it lacks are left out."""
        ...


def secret_references(recipe_text: str) -> set[str]:
    """Names of the secrets a recipe references as ``${NAME}``."""
    return set(SECRET_REFERENCE.findall(recipe_text))


def resolve_secrets(names: Iterable[str], stores: Sequence[SecretStore]) -> dict[str, str]:
    """Look ``names`` up in every store in order; a later store's value wins.

    Raises ``MissingSecretError`` naming (only) the secrets no store holds. A store's own
    errors propagate: the caller decides whether to retry.
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    values: dict[str, str] = {}
    for store in stores:
        found = store.get(wanted)
        found = {k: v for k, v in found.items() if k in wanted and isinstance(v, str)}
        if found:
            logger.debug("secret store {} supplied {} of {} secret(s)", store.name, len(found), len(wanted))
        values.update(found)
    missing = [n for n in wanted if n not in values]
    if missing:
        raise MissingSecretError(missing)
    return values
