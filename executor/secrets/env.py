"""The environment secret store: secrets from the executor's own environment variables.

The executor's environment is not the recipe's to browse: it may hold the host's AWS keys, a
proxy password, or an alias of the GMS token. So the store serves only names the pool allows
(``secrets.env.names`` and ``secrets.env.prefixes``; by default nothing), never the names of the
executor's own credentials, and it refuses, with an error that names the variable and never
its value, any variable whose value is one of the executor's own credentials whatever it is
called: the GMS token, the host's AWS keys, and any value registered with
``executor.hardening.register`` (a lease's keys, once the leaser registers them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence

from loguru import logger

from executor.errors import NotAllowedError
from executor.hardening import CREDENTIAL_VARIABLES, own_credentials

ALWAYS_DENIED = frozenset(CREDENTIAL_VARIABLES)
"""Names that are the executor's own credentials: never served, whatever the allowlist says."""


class EnvStore:
    """Looks allowed names up in ``environ`` (the process environment by default)."""

    name = "env"

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        names: Collection[str] = (),
        prefixes: Collection[str] = (),
        own: Callable[[], Collection[str]] = own_credentials,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._names = frozenset(names)
        self._prefixes = tuple(p for p in prefixes if p)
        self._own = own

    def allows(self, name: str) -> bool:
        """True if the pool lets recipes read the variable ``name`` through this store."""
        if name in ALWAYS_DENIED:
            return False
        return name in self._names or name.startswith(self._prefixes)

    def get(self, names: Sequence[str]) -> dict[str, str]:
        """Values of the allowed variables that are set; raises ``NotAllowedError`` for a credential."""
        refused = [n for n in names if not self.allows(n) and n in self._environ]
        if refused:
            logger.info("env secret store: {} not allowed for this pool (secrets.env.names / "
                        "secrets.env.prefixes); other stores may still supply them",
                        ", ".join(sorted(refused)))
        found = {n: self._environ[n] for n in names if self.allows(n) and n in self._environ}
        own = self._credentials()
        leaking = sorted(n for n, v in found.items() if v in own)
        if leaking:
            raise NotAllowedError(
                f"the env secret store refuses {', '.join(leaking)}: the value is one of the "
                "executor's own credentials"
            )
        return found

    def _credentials(self) -> frozenset[str]:
        in_env = {self._environ[n] for n in CREDENTIAL_VARIABLES if self._environ.get(n)}
        return frozenset(self._own()) | in_env
