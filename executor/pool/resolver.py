"""SecretResolver: turns a recipe's ``${NAME}`` references into values, through ordered stores.

Stores are consulted in the pool's configured order and a later store's value wins, as in
DataHub. A missing secret is answered with its *name*; values are only ever sent to the Task
that asked, which passes them to the recipe on stdin.
"""

from __future__ import annotations

from typing import Any

import pykka

from executor.errors import MissingSecretError, RetryableError
from executor.pool.base import PoolActor
from executor.pool.context import PoolContext
from executor.pool.messages import Resolve, SecretsFailed, SecretsResolved
from executor.secrets import SecretStore, build_store, resolve_secrets
from executor.supervision import ChildContext


class SecretResolver(PoolActor):
    """Holds the pool's secret stores and answers ``Resolve`` requests."""

    def __init__(self, ctx: ChildContext, pool: PoolContext) -> None:
        super().__init__(ctx, pool)
        self.stores: list[SecretStore] = []

    def setup(self) -> None:
        settings = self.pool.pool.secrets
        proxies = self.pool.config.proxy.as_requests_proxies() or None
        self.stores = [build_store(kind, settings, self.gms, proxies) for kind in settings.stores]

    def handle(self, message: Any) -> Any:
        if isinstance(message, Resolve):
            answer = self._resolve(message.names)
            try:
                message.reply_to.tell(answer)
            except pykka.ActorDeadError:
                self.log.debug("the task that asked for secrets has ended; answer dropped")
        return None

    def _resolve(self, names: tuple[str, ...]) -> SecretsResolved | SecretsFailed:
        try:
            return SecretsResolved(resolve_secrets(names, self.stores))
        except MissingSecretError as exc:
            return SecretsFailed(str(exc), missing=tuple(exc.names))
        except RetryableError as exc:
            return SecretsFailed(f"a secret store could not be reached: {exc}", retryable=True)
        except Exception as exc:  # a store's own failure must not kill the resolver
            self.log.error("secret store failed: {}", type(exc).__name__)
            return SecretsFailed(f"a secret store failed: {type(exc).__name__}: {exc}")
