"""A tiny GraphQL caller for the local tools (``demo``), over DataHub's public API only."""

from __future__ import annotations

from typing import Any

import requests


def call(gms_url: str, token: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST one operation to ``/api/graphql``; raise on HTTP errors and GraphQL ``errors``."""
    response = requests.post(
        f"{gms_url.rstrip('/')}/api/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError("; ".join(str(e.get("message")) for e in body["errors"]))
    data: dict[str, Any] = body["data"]
    return data
