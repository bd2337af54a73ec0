"""A minimal GraphQL client for the command-line tools (``submit``, ``cancel``, ``secret set``).

It talks only to ``POST {gms}/api/graphql`` with a bearer token, so the tools work the same
against this control plane and against DataHub. Failures are mapped onto the project's
errors: unreachable or 5xx -> ``TransportError`` (retry), 401/403 -> ``NotAllowedError``,
GraphQL ``errors`` -> ``BadInputError`` carrying the server's messages.
"""

from __future__ import annotations

from typing import Any

import requests

from executor.errors import BadInputError, NotAllowedError, TransportError


class GraphQLClient:
    """GraphQL over HTTP against one GMS."""

    def __init__(self, gms_url: str, token: str, timeout_s: float = 15.0) -> None:
        if not gms_url.startswith(("http://", "https://")):
            raise BadInputError(f"the GMS URL must start with http:// or https://, got {gms_url!r}")
        self.url = gms_url.rstrip("/") + "/api/graphql"
        self._timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def __enter__(self) -> GraphQLClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of a successful call; raises as described in the module docstring."""
        try:
            answer = self._session.post(
                self.url, json={"query": query, "variables": variables or {}}, timeout=self._timeout_s
            )
        except requests.RequestException as exc:
            raise TransportError(f"cannot reach {self.url}: {type(exc).__name__}") from None
        if answer.status_code in (401, 403):
            raise NotAllowedError(f"GMS refused the token (HTTP {answer.status_code})")
        if answer.status_code >= 500:
            raise TransportError(f"GMS answered HTTP {answer.status_code}")
        try:
            body = answer.json()
        except ValueError:
            raise TransportError(f"GMS answered HTTP {answer.status_code} without JSON") from None
        if not isinstance(body, dict):
            raise TransportError("GMS answered with an unexpected JSON shape")
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"] if isinstance(e, dict))
            raise BadInputError(messages or "GraphQL error")
        data = body.get("data")
        if not isinstance(data, dict):
            raise TransportError("GMS answered without data")
        return data
