"""The small botocore session: the same SQS endpoints and signing as botocore's own, for less."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import botocore.session
import pytest
from botocore.config import Config

from executor.datahub.lease import Lease
from executor.queue.aws_session import SharedSession, partitions_only, small_session


def _regions() -> list[str]:
    """A region of every partition botocore knows (and the first two of the main one)."""
    data = botocore.session.Session().get_component("data_loader").load_data("partitions")
    picked = []
    for partition in data["partitions"]:
        names = sorted(r for r in partition["regions"] if not r.startswith("aws"))  # not aws-global
        picked += names[:2] if partition["id"] == "aws" else names[:1]
    return picked


def _seen(client: object) -> tuple[str, str, str]:
    signer = client._request_signer  # type: ignore[attr-defined]
    return client.meta.endpoint_url, signer.region_name, signer.signing_name  # type: ignore[attr-defined]


@pytest.mark.parametrize("region", _regions())
def test_same_endpoint_and_signing_region_as_botocores_own_table(region: str) -> None:
    full, small = botocore.session.Session(), small_session()
    made = [s.create_client("sqs", region_name=region, aws_access_key_id="k", aws_secret_access_key="s")
            for s in (full, small)]
    assert _seen(made[1]) == _seen(made[0])


def test_the_legacy_table_keeps_every_partition_and_no_service() -> None:
    loader = botocore.session.Session().get_component("data_loader")
    table = partitions_only(loader.load_data("partitions"))
    ids = {p["partition"] for p in table["partitions"]}
    assert {"aws", "aws-cn", "aws-us-gov"} <= ids
    assert all(p["services"] == {} and p["dnsSuffix"] for p in table["partitions"])


def test_shared_session_gives_each_client_its_leases_credentials() -> None:
    now = datetime.now(timezone.utc)
    shared = SharedSession()
    leases = [
        Lease(
            pool_id="p",
            queue_url="http://127.0.0.1:1/000000000000/q",
            region="eu-west-1",
            access_key_id=f"AKIA{n}",
            secret_access_key=f"secret-{n}",
            session_token=f"token-{n}",
            expiration=now + timedelta(hours=1),
            issued_at=now,
        )
        for n in (1, 2)
    ]
    clients = [shared.client("sqs", lease, "http://127.0.0.1:1", Config()) for lease in leases]
    keys = [c._request_signer._credentials.get_frozen_credentials() for c in clients]
    assert [k.access_key for k in keys] == ["AKIA1", "AKIA2"]
    assert [k.token for k in keys] == ["token-1", "token-2"]
    assert clients[0].meta.endpoint_url == "http://127.0.0.1:1"
