"""The environment secret store: secrets from the executor's own environment variables."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence

DEFAULT_DENIED = frozenset({"DATAHUB_GMS_TOKEN"})
"""The executor's own credential is never handed to a recipe, even if one asks for it."""


class EnvStore:
    """Looks names up in ``environ`` (the process environment by default)."""

    name = "env"

    def __init__(
        self, environ: Mapping[str, str] | None = None, denied: Collection[str] = DEFAULT_DENIED
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._denied = frozenset(denied)

    def get(self, names: Sequence[str]) -> dict[str, str]:
        """Values of the named variables that are set (and not denied)."""
        return {n: self._environ[n] for n in names if n not in self._denied and n in self._environ}
