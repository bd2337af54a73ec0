"""The GMS HTTP server: bearer-token check and routing to the REST and GraphQL handlers.

Every path but ``/health`` needs ``Authorization: Bearer <token>`` (compared in constant time);
without it the answer is 401, given before a byte of the body is read. Bodies are capped
(413 above ``MAX_BODY_BYTES``) and must be JSON; a body that is not gets a 400 that says so.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from loguru import logger

from executor.local.controlplane.graphql_api import run_graphql
from executor.local.controlplane.graphql_resolvers import ApiContext
from executor.local.controlplane.http_base import JsonHandler, LoopbackServer
from executor.local.controlplane.rest_api import RestApi, restli_error, server_config

BATCH_PREFIX = "/openapi/v2/entity/batch/"
ENTITY_PREFIX = "/openapi/v2/entity/"
ASPECTS_PREFIX = "/aspects/"


class GmsServer(LoopbackServer):
    """Holds the token and the handlers the request handler routes to."""

    def __init__(self, host: str, port: int, token: str, rest: RestApi, context: ApiContext) -> None:
        super().__init__((host, port), GmsHandler, "controlplane-gms")
        self.token = token
        self.rest = rest
        self.context = context
        self.refused_results: set[str] = set()
        """Test hook: request URNs whose result writes are answered 422 (a GMS that cannot
        take one particular result)."""
        self.refusal: int | None = None
        """Test hook: answer every authorized call with this status (401 or 403), as a GMS does
        whose token was revoked or lost its privileges; None serves normally."""


class GmsHandler(JsonHandler):
    """Routes one request."""

    server: GmsServer
    wbufsize = 64 * 1024
    """Buffered (and Nagle off, ``JsonHandler``): headers and body leave in one write when the
    handler flushes after each request. Unbuffered, the body waited behind the headers for the
    client's delayed ACK: about 40 ms on every GMS answer."""

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.server.token.encode()
        )

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, params = parts.path.rstrip("/") or "/", parse_qs(parts.query)
        if path == "/health" and method in ("GET", "HEAD"):
            self.send_json(200, {"status": "GREEN"})
            return
        if not self._authorized():  # before the body: a stranger's body is never read
            status, payload = restli_error(401, "Unauthorized: a valid Bearer token is required")
            self.refuse(status, payload, {"WWW-Authenticate": "Bearer"})
            return
        if self.server.refusal is not None:
            status, payload = restli_error(self.server.refusal, "Refused: the token lacks the privileges")
            self.refuse(status, payload)
            return
        body = self.read_body() if method == "POST" else b""
        if body is None:
            return
        try:
            status, payload = self._dispatch(method, path, params, parts.path, body)
        except Exception as exc:  # one bad request must not take the server down
            logger.error("gms {} {} failed: {}", method, path, type(exc).__name__)
            status, payload = restli_error(500, "internal error in the local control plane")
        self.send_json(status, payload)

    def _dispatch(
        self, method: str, path: str, params: dict[str, list[str]], raw_path: str, body: bytes
    ) -> tuple[int, Any]:
        rest = self.server.rest
        if method in ("GET", "HEAD"):
            if path == "/config":
                return 200, server_config()
            if raw_path.startswith(ASPECTS_PREFIX):
                return rest.get_aspect(unquote(raw_path[len(ASPECTS_PREFIX) :]), params)
            if path.startswith(ENTITY_PREFIX) and "/" not in path[len(ENTITY_PREFIX) :]:
                return rest.scroll(path[len(ENTITY_PREFIX) :], params)
            return restli_error(404, f"no such resource: GET {path}")
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return restli_error(400, "the request body is not valid JSON")
        if path == "/api/graphql":
            return 200, run_graphql(payload, self.server.context)
        if path == "/aspects":
            action = (params.get("action") or [""])[0]
            if action in ("ingestProposal", "ingestProposalBatch"):
                if _refused_result(payload, self.server.refused_results):
                    return restli_error(422, "this result cannot be stored (test hook)")
                return rest.ingest(payload, batch=action == "ingestProposalBatch")
            if action == "getTimeseriesAspectValues":
                return rest.timeseries_values(payload)
            return restli_error(400, f"unsupported action {action!r}")
        if path.startswith(BATCH_PREFIX):
            return rest.batch_get(path[len(BATCH_PREFIX) :], payload)
        return restli_error(404, f"no such resource: POST {path}")


def _refused_result(payload: Any, refused: set[str]) -> bool:
    """True for a single result write of a request in ``refused`` (``refused_results``)."""
    proposal = payload.get("proposal") if isinstance(payload, dict) else None
    return (
        bool(refused) and isinstance(proposal, dict)
        and proposal.get("aspectName") == "dataHubExecutionRequestResult"
        and proposal.get("entityUrn") in refused
    )
