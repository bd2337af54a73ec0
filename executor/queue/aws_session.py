"""The process's one botocore session, made small: what an idle executor pays for SQS.

A botocore session holds the parsed data its clients use, and clients made from one session
share it, so every pool and every lease refresh uses this one session (``SESSION``) and pays
only for a client (about 0.2 MB); the lease's credentials go to the client, never the session.

Of the session's data, botocore's legacy endpoint table (``endpoints.json``: every service in
every region, about 6.7 MB once parsed) is used by a client only to guess a region's partition
and defaults, while the URL itself comes from SQS's endpoint rule set. The table is replaced by
one with the same partitions and no per-service entries, built from ``partitions.json`` (which
the rule sets load anyway): the same URLs and signing regions, 6.7 MB less
(``tests/adapters/test_aws_session.py`` compares both for every partition).
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.regions import EndpointResolver
from loguru import logger

from executor.datahub.lease import Lease

_DEFAULTS = {
    "hostname": "{service}.{region}.{dnsSuffix}",
    "protocols": ["https"],
    "signatureVersions": ["v4"],
}


def partitions_only(partitions: dict[str, Any]) -> dict[str, Any]:
    """botocore's legacy endpoint table for ``partitions`` (the rule sets' ``partitions.json``),
    with every partition's regions and DNS suffix and no per-service entries."""
    table = []
    for partition in partitions.get("partitions", []):
        outputs = partition.get("outputs", {})
        table.append({
            "partition": partition["id"],
            "partitionName": outputs.get("name", partition["id"]),
            "dnsSuffix": outputs.get("dnsSuffix", "amazonaws.com"),
            "regionRegex": partition.get("regionRegex", ""),
            "regions": {
                name: {"description": region.get("description", name)}
                for name, region in partition.get("regions", {}).items()
            },
            "defaults": dict(_DEFAULTS),
            "services": {},
        })
    return {"partitions": table, "version": 3}


def small_session() -> botocore.session.Session:
    """A botocore session whose endpoint table holds partitions only (see the module doc).

    Should botocore ever stop taking the replacement, the session keeps its own table: the
    same behaviour, at the old cost.
    """
    session = botocore.session.Session()
    try:
        loader = session.get_component("data_loader")
        resolver = EndpointResolver(partitions_only(loader.load_data("partitions")), uses_builtin_data=True)
        session._internal_components.register_component("endpoint_resolver", resolver)
    except Exception as exc:  # a botocore without these internals: keep its defaults
        logger.debug("botocore's full endpoint table stays loaded: {}", exc)
    return session


class SharedSession:
    """One session for the process, made on first use; ``client`` is thread-safe.

    botocore sessions are not thread-safe while they create clients (the clients themselves
    are), and the pollers of several pools make clients from their own threads: one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: botocore.session.Session | None = None

    def client(self, service: str, lease: Lease, endpoint: str | None, config: Config) -> Any:
        """A ``service`` client signing with ``lease``'s credentials (never the host's)."""
        with self._lock:
            if self._session is None:
                self._session = small_session()
            return self._session.create_client(
                service,
                region_name=lease.region,
                endpoint_url=endpoint,
                aws_access_key_id=lease.access_key_id,
                aws_secret_access_key=lease.secret_access_key,
                aws_session_token=lease.session_token,
                config=config,
            )


SESSION = SharedSession()
"""The process's one session."""
