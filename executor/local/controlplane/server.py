"""``ControlPlane``: wires storage, moto, the SQS gateway and the GMS API, and runs them.

This is the Python API the rest of the project (tests, ``demo``) uses::

    with ControlPlane(pools=("default",)) as cp:
        cp.gms_url, cp.token        # what an executor needs
        cp.expire_leases("default")  # every key issued to that pool stops working now

``start()`` brings everything up on ephemeral loopback ports (unless told otherwise) and
``stop()`` takes down all it started, in reverse order. With no ``state_dir`` the state lives in
a temporary directory removed at stop; with one, a later start with the same directory finds
secrets, sources, requests, results and ingested aspects again (queues are recreated empty).
Executors reach SQS through the lease-checking gateway; ``direct_sqs_pools`` sends the leases of
some pools straight to moto instead (the bench's comparative rows: like Celery's workers there,
and a real executor at AWS SQS, they then pay no gateway hop).
"""

from __future__ import annotations

import re
import secrets as token_source
import shutil
import tempfile
import time
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar, cast

from loguru import logger

from executor.datahub.envelope import encode_envelope
from executor.errors import BadInputError
from executor.local.controlplane.aspects import Aspects
from executor.local.controlplane.aws import ACCOUNT_ID, REGION, MotoBackend, PoolQueues
from executor.local.controlplane.gateway import GatewayServer
from executor.local.controlplane.gms_http import GmsServer
from executor.local.controlplane.graphql_resolvers import ApiContext
from executor.local.controlplane.ingestion import Ingestion
from executor.local.controlplane.leases import LeaseBook
from executor.local.controlplane.rest_api import RestApi
from executor.local.controlplane.secrets import Secrets
from executor.local.controlplane.storage import AspectWrite, Storage

_Part = TypeVar("_Part")
POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""SQS queue-name characters; the queue is named after the pool."""


def _check_args(pools: tuple[str, ...], lease_seconds: float, max_receive_count: int) -> None:
    if not pools:
        raise BadInputError("at least one pool is needed")
    bad = [p for p in pools if not POOL_ID.match(p)]
    if bad:
        raise BadInputError(f"pool ids must be 1-64 letters, digits, '-' or '_': {', '.join(map(repr, bad))}")
    if len(set(pools)) != len(pools):
        raise BadInputError("pool ids must be unique")
    if lease_seconds <= 0:
        raise BadInputError("lease_seconds must be > 0")
    if not 1 <= max_receive_count <= 1000:
        raise BadInputError("max_receive_count must be between 1 and 1000 (SQS's range)")


class ControlPlane:
    """A local GMS with SQS and STS for the given pools."""

    def __init__(
        self,
        pools: tuple[str, ...] | list[str] = ("default",),
        token: str | None = None,
        state_dir: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        lease_seconds: float = 3600,
        max_receive_count: int = 5,
        *,
        secret_key: bytes | None = None,
        gateway_port: int = 0,
        sqs_public_url: str | None = None,
        direct_sqs_pools: Collection[str] = (),
    ) -> None:
        self.pools = tuple(pools)
        _check_args(self.pools, lease_seconds, max_receive_count)
        unknown = sorted(set(direct_sqs_pools) - set(self.pools))
        if unknown:
            raise BadInputError(f"direct_sqs_pools names no pool of this control plane: {', '.join(unknown)}")
        self.direct_sqs_pools = frozenset(direct_sqs_pools)
        """Pools whose leases hand out moto's own queue URL, not the gateway's: their executors talk
        to SQS with nothing between, as a real executor talks to AWS SQS (and as the bench's Celery
        workers talk to moto). Their credentials are still leased, but SQS no longer checks them
        (moto accepts any key): an expired or revoked lease keeps working. moto then keeps every
        client's connection alive, as SQS does, not only the gateway's. Off by default; the
        bench turns it on for its comparative rows only."""
        self.token = token or token_source.token_urlsafe(32)
        self.host = host
        self.port = port
        self.lease_seconds = lease_seconds
        self.max_receive_count = max_receive_count
        self._state_dir = state_dir
        self._owns_state_dir = state_dir is None
        self._secret_key = secret_key
        self._gateway_port = gateway_port
        self.sqs_public_url = sqs_public_url.rstrip("/") if sqs_public_url else None
        """Base of the queue URLs handed out, when executors must reach the gateway another way
        (a test's TCP proxy in front of it); None: the gateway's own URL."""
        self._storage: Storage | None = None
        self._moto: MotoBackend | None = None
        self._gateway: GatewayServer | None = None
        self._gms: GmsServer | None = None
        self._queues: dict[str, PoolQueues] = {}
        self.leases = LeaseBook()
        self.lease_overrides: dict[str, dict[str, Any]] = {}
        """Test hook: fields that replace those of a pool's ``listExecutorConfigs`` entry (a bad
        ``queueUrl``, say), as a misconfigured or hostile GMS would hand them out."""
        self._started_at = 0.0
        self.secrets: Secrets
        self.aspects: Aspects
        self.ingestion: Ingestion

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Start storage, moto and both HTTP servers; on any failure, stop what started."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        logger.info("control plane up at {} for pool(s) {}", self.gms_url, ", ".join(self.pools))
        if self.direct_sqs_pools:
            logger.warning(
                "pool(s) {} lease moto's queue URL directly: SQS does not check their leases",
                ", ".join(sorted(self.direct_sqs_pools)),
            )
        return self

    def _start(self) -> None:
        self._started_at = time.time()
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning(
                "serving on {}: not loopback; anyone who can reach it may try the token", self.host
            )
        if self._state_dir is None:
            self._state_dir = tempfile.mkdtemp(prefix="controlplane-")
        self._storage = Storage(self._state_dir)
        self.secrets = Secrets(self._storage, self._secret_key)
        self.aspects = Aspects(self._storage)
        self._moto = MotoBackend(self.host, keep_alive_all=bool(self.direct_sqs_pools))
        self._moto.start()
        tag = token_source.token_hex(4)
        for pool in self.pools:
            self._queues[pool] = self._moto.create_pool_queues(pool, tag, self.max_receive_count)
        self._gateway = GatewayServer(
            self.host, self._gateway_port, self.leases, self._moto.endpoint, self._allowed_queues
        )
        self._gateway.start()
        self.ingestion = Ingestion(self.aspects, lambda: list(self.pools), self._dispatch)
        context = ApiContext(self.secrets, self.ingestion, self.executor_configs)
        self._gms = GmsServer(self.host, self.port, self.token, RestApi(self.aspects), context)
        self._gms.start()

    def stop(self) -> None:
        """Stop everything this instance started (idempotent); one part failing stops the rest."""
        gms, gateway, moto, storage = self._gms, self._gateway, self._moto, self._storage
        self._gms = self._gateway = self._moto = self._storage = None
        queues, self._queues = list(self._queues.values()), {}
        steps: list[tuple[str, Callable[[], None] | None]] = [
            ("gms server", gms.stop if gms else None),
            ("sqs gateway", gateway.stop if gateway else None),
            ("queues", (lambda: moto.delete_queues(queues)) if moto else None),
            ("moto server", moto.stop if moto else None),
            ("storage", storage.close if storage else None),
        ]
        for name, step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception as exc:  # keep stopping the other parts
                logger.warning("stopping the {} failed: {}", name, exc)
        if self._owns_state_dir and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def gms_url(self) -> str:
        """``http://127.0.0.1:PORT``: what clients use as the GMS URL."""
        return self._running(self._gms).url

    @property
    def sqs_endpoint(self) -> str:
        """The moto server (accepts any credentials): for inspection in tests."""
        return self._running(self._moto).endpoint

    @property
    def sqs_gateway(self) -> str:
        """The lease-checking SQS endpoint that executors are sent to."""
        return self._running(self._gateway).url

    @property
    def state_dir(self) -> str | None:
        """Where the SQLite state lives."""
        return self._state_dir

    def queue_url(self, pool_id: str) -> str:
        """The pool's queue URL on moto (for inspection with any credentials)."""
        return self._pool(pool_id).queue_url

    def dlq_url(self, pool_id: str) -> str:
        """The pool's dead-letter queue URL on moto."""
        return self._pool(pool_id).dlq_url

    def gateway_queue_url(self, pool_id: str) -> str:
        """The pool's queue URL through the gateway: what ``listExecutorConfigs`` hands out
        (unless the pool is in ``direct_sqs_pools``)."""
        base = self.sqs_public_url or self.sqs_gateway
        return f"{base}/{ACCOUNT_ID}/{self._pool(pool_id).queue_name}"

    def leased_queue_url(self, pool_id: str) -> str:
        """The queue URL a pool's lease hands out: the gateway's, or moto's for a direct pool."""
        if pool_id in self.direct_sqs_pools:
            return self.queue_url(pool_id)
        return self.gateway_queue_url(pool_id)

    def _pool(self, pool_id: str) -> PoolQueues:
        if pool_id not in self._queues:
            raise KeyError(f"no pool {pool_id!r} (running: {', '.join(self._queues) or 'none'})")
        return self._queues[pool_id]

    @staticmethod
    def _running(part: _Part | None) -> _Part:
        if part is None:
            raise RuntimeError("the control plane is not running")
        return part

    # -- leases and dispatch ----------------------------------------------------------------

    def executor_configs(self, executor_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """One fresh STS lease per pool (narrowed to ``executor_ids``): listExecutorConfigs."""
        wanted = self.pools if executor_ids is None else [p for p in self.pools if p in executor_ids]
        moto = self._running(self._moto)
        configs = []
        for pool in wanted:
            creds = moto.assume_role(pool, int(self.lease_seconds))
            lease = self.leases.issue(creds.access_key_id, pool, self.lease_seconds)
            expiration = datetime.fromtimestamp(lease.expires_at, tz=timezone.utc)
            configs.append(
                {
                    "executorId": pool,
                    "region": REGION,
                    "queueUrl": self.leased_queue_url(pool),
                    "accessKeyId": creds.access_key_id,
                    "secretKeyId": creds.secret_access_key,
                    "sessionToken": creds.session_token,
                    "expiration": expiration.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    **self.lease_overrides.get(pool, {}),
                }
            )
        return configs

    def plant_request(self, pool_id: str, urn: str, input_value: object) -> None:
        """Test hook: store ``input_value`` as the request's input aspect *unvalidated* (a list,
        a broken object: what a damaged or hostile GMS could hold) and queue the request."""
        self._pool(pool_id)
        write = AspectWrite(urn, "dataHubExecutionRequest", "dataHubExecutionRequestInput",
                            cast(dict[str, Any], input_value))
        self._running(self._storage).put_aspects([write])
        self._dispatch(pool_id, urn)

    def refuse_results(self, urns: set[str]) -> None:
        """Test hook: answer result writes of these requests with 422 until called with an
        empty set (a result GMS cannot take, while everything else works)."""
        self._running(self._gms).refused_results = set(urns)

    def refuse_token(self, status: int | None) -> None:
        """Test hook: answer every authorized GMS call with ``status`` (401: the token was
        revoked; 403: it lost its privileges) until called again with None."""
        if status not in (None, 401, 403):
            raise BadInputError("refuse_token takes 401, 403 or None")
        self._running(self._gms).refusal = status

    def expire_leases(self, pool_id: str | None = None) -> int:
        """Make every key issued so far to ``pool_id`` (or to all pools) expired now."""
        if pool_id is not None:
            self._pool(pool_id)
        return self.leases.expire(pool_id)

    def _allowed_queues(self, pool_id: str) -> set[str]:
        queues = self._queues.get(pool_id)
        return set() if queues is None else {queues.queue_name, queues.dlq_name}

    def _dispatch(self, pool_id: str, urn: str) -> None:
        self._running(self._moto).send(self.queue_url(pool_id), encode_envelope(urn, pool_id))
        logger.info("queued {} for pool {}", urn, pool_id)

    # -- inspection -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What ``--info-file`` holds: URLs, token, region, state and the pools' queues."""
        return {
            "gms_url": self.gms_url,
            "token": self.token,
            "sqs_endpoint": self.sqs_endpoint,
            "sqs_gateway": self.sqs_gateway,
            "region": REGION,
            "state_dir": self._state_dir,
            "secrets_encrypted": self.secrets.encrypted,
            "lease_seconds": self.lease_seconds,
            "max_receive_count": self.max_receive_count,
            "started_at": self._started_at,
            "pools": {
                pool: {
                    "queue_name": q.queue_name,
                    "queue_url": self.leased_queue_url(pool),
                    "moto_queue_url": q.queue_url,
                    "dlq_url": q.dlq_url,
                }
                for pool, q in self._queues.items()
            },
        }

    def get_aspect(self, urn: str, aspect_name: str) -> dict[str, Any] | None:
        """The latest value of an aspect, read from the state directly."""
        return self.aspects.value(urn, aspect_name)

    def aspect_history(self, urn: str, aspect_name: str) -> list[dict[str, Any]]:
        """Every stored value of an aspect, oldest first."""
        return [s.value for s in self.aspects.history(urn, aspect_name)]

    def list_aspects(self, entity_type: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        """``(urn, aspect name, latest value)`` of every stored aspect (of one entity type)."""
        return [(s.urn, s.aspect, s.value) for s in self.aspects.latest(entity_type=entity_type)]
