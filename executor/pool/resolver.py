"""A Task's secret read: its recipe's ``${NAME}`` references turned into values, on its own thread.

Stores are consulted in the pool's configured order and a later store's value wins, as in
DataHub. A missing secret is answered with its *name*; values go only to the Task that reads
them, which passes them to the recipe on stdin.

Until session 17 a pool actor (``SecretResolver``, on the pool's strand) made this read for every
Task: a ``Resolve`` hop there and a ``SecretsResolved`` hop back, each a wake-up of a sleeping
thread and a fight for the interpreter lock while the Task, the reporter's RUNNING and the
recipe's start-up ran beside it (performance-log.md, "Session 17, the pool's side of a task").
The read costs the same CPU on either thread; the Task makes it after its recipe is spawned, so
the call overlaps the recipe's start-up as before. Each call is bounded by its client's own
deadline (a GMS call's total deadline, the AWS client's connect and read timeouts), so no answer
can be lost between actors and none needs a deadline of its own.

The stores are cheap to make per read but for AWS Secrets Manager's (a boto3 client): that one
is made once per pool (``PoolContext.aws_store``) and shared by its Tasks (boto3 clients are
thread-safe). The datahub store reads with the calling Task's own GMS client.
"""

from __future__ import annotations

from executor.datahub.gms import GmsClient
from executor.errors import MissingSecretError, RetryableError
from executor.pool.context import PoolContext
from executor.pool.messages import SecretsFailed, SecretsResolved
from executor.secrets import SecretStore, build_store, resolve_secrets

AWS_STORE = "aws-secrets-manager"


def pool_stores(pool: PoolContext, gms: GmsClient) -> list[SecretStore]:
    """The pool's stores in its configured order, for a read with ``gms`` (the caller's client)."""
    settings = pool.pool.secrets

    def aws() -> SecretStore:
        return build_store(AWS_STORE, settings, None, pool.config.proxy.as_requests_proxies() or None)

    return [pool.aws_store.get(aws) if kind == AWS_STORE else build_store(kind, settings, gms)
            for kind in settings.stores]


def read_secrets(
    pool: PoolContext, gms: GmsClient, names: tuple[str, ...]
) -> SecretsResolved | SecretsFailed:
    """The values of ``names`` through the pool's stores, or why not (never raises: a store's own
    failure fails the request that asked, not the Task's actor)."""
    try:
        return SecretsResolved(resolve_secrets(names, pool_stores(pool, gms)))
    except MissingSecretError as exc:
        return SecretsFailed(str(exc), missing=tuple(exc.names))
    except RetryableError as exc:
        return SecretsFailed(f"a secret store could not be reached: {exc}", retryable=True)
    except Exception as exc:  # a store's own failure (or a store that cannot be made)
        return SecretsFailed(f"a secret store failed: {type(exc).__name__}: {exc}")
