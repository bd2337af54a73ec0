"""The GMS client: the few DataHub calls the executor makes, with errors mapped to ``errors.py``.

A bearer token, and an ``http_origin.Origin``: the client's own, or one shared by many clients
(a pool's actors and Tasks share one: its connections are kept alive across tasks, and a task
makes no connection pool of its own). An ``Origin`` fixes its TLS settings and proxy when it is
made and keeps no cookies, so clients on several threads share it without seeing each other's
calls; token and headers are the client's own, sent with each call.
Every call is bounded (``bounded_http``): a total deadline of ``timeout_s`` covers connect,
send, headers and body, however slowly the peer drips, and an answer above ``max_bytes`` is
abandoned as it streams in. After a call runs into its deadline the client fails fast for one
deadline's length, so an actor is blocked by a hung GMS for at most one deadline at a time.
HTTP outcomes become the executor's exception hierarchy:

    connection error, deadline, 5xx, too big, non-JSON -> TransportError   (retry)
    429                                               -> ThrottledError   (retry)
    401, 403                                          -> NotAllowedError  (final)
    400/422 saying the result is already "terminal"   -> ImmutableError   (final)
    any other 4xx                                     -> BadInputError    (final)

Error messages hold the call's name, the status and a short server message; never the
token or a request body (a body may carry secrets or a recipe).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from executor import __version__
from executor.datahub.bounded_http import CALL_ERRORS, CallLimits, TooLarge
from executor.datahub.http_origin import Origin
from executor.datahub.lease import Lease, utcnow
from executor.datahub.proposal import ProposalBody
from executor.errors import (
    BadInputError,
    ConfigError,
    ImmutableError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)

SECRETS_PER_CALL = 100
URNS_PER_BATCH_READ = 100
CONNECT_TIMEOUT_S = 3.0
"""One connect attempt; the rest of ``timeout_s`` is for sending and the answer."""
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""The largest answer read: GMS's biggest legitimate one is a request's aspects, whose result
holds at most 15,368,520 characters of report and structured report (DataHub's own cap)."""
_MESSAGE_CHARS = 300
_ERROR_BYTES = 64 * 1024

LIST_EXECUTOR_CONFIGS = """
query listExecutorConfigs {
  listExecutorConfigs {
    total
    executorConfigs { executorId region queueUrl accessKeyId secretKeyId sessionToken expiration }
  }
}
"""
# Sent without input, as DataHub's own executor does: the input type's name differs between
# server versions, and the entry is picked by ``executorId`` on our side anyway.

GET_SECRET_VALUES = """
query getSecretValues($input: GetSecretValuesInput!) {
  getSecretValues(input: $input) { name value }
}
"""  # noqa: S105 (a query, not a password)


class GmsClient:
    """A small, synchronous client of DataHub GMS; not thread-safe (one per actor)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        verify: bool | str = True,
        proxies: Mapping[str, str | None] | None = None,
        max_bytes: int = MAX_RESPONSE_BYTES,
        origin: Origin | None = None,
    ) -> None:
        """``verify`` and ``proxies`` make the client's own ``Origin``; a given ``origin`` (for
        this same ``url``) comes with its own and is left open by ``close``."""
        if not url.startswith(("http://", "https://")):
            raise ConfigError("GMS url", ["must start with http:// or https://"])
        if timeout_s <= 0:
            raise ConfigError("GMS client", ["timeout_s must be > 0"])
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        """The total deadline of one call."""
        self.limits = CallLimits(timeout_s, min(timeout_s, CONNECT_TIMEOUT_S), max_bytes)
        self._quiet_until = 0.0
        self._token = token or ""
        self._owns_origin = origin is None
        self._origin = origin if origin is not None else Origin(self.url, verify=verify, proxies=proxies)
        if self._origin.url != self.url:
            raise ConfigError("GMS client", [f"its connections go to {self._origin.url}, not {self.url}"])
        self._headers = {"X-RestLi-Protocol-Version": "2.0.0", "Accept": "*/*",
                         "Accept-Encoding": "gzip, deflate", "User-Agent": f"remote-executor/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._json_headers = {**self._headers, "Content-Type": "application/json"}

    def __repr__(self) -> str:
        return f"GmsClient({self.url!r})"

    @property
    def host(self) -> str:
        """GMS's host name: a lease may use plain http for a queue on this host (a local
        control plane serves both), as it may on loopback."""
        return (urlsplit(self.url).hostname or "").lower()

    def __enter__(self) -> GmsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's own connections (a shared ``Origin`` stays with its owner)."""
        if self._owns_origin:
            self._origin.close()

    # -- generic calls ---------------------------------------------------------------------
    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, operation_name: str | None = None
    ) -> dict[str, Any]:
        """Run a GraphQL operation and return its ``data``; GraphQL ``errors`` in a 200 raise too."""
        body: dict[str, Any] = {"query": query, "variables": dict(variables or {})}
        if operation_name:
            body["operationName"] = operation_name
        what = f"GraphQL {operation_name or _operation_of(query)}"
        answer = self._call("POST", "/api/graphql", what, body=body)
        if not isinstance(answer, dict):
            raise TransportError(f"{what}: GMS answered with something that is not a JSON object")
        errors = answer.get("errors")
        if errors:
            raise _graphql_error(what, errors, self._token)
        data = answer.get("data")
        if not isinstance(data, dict):
            raise TransportError(f"{what}: GMS answered without data")
        return data

    def health(self) -> None:
        """Return when GMS says it is up; raise a mapped error otherwise."""
        self._call("GET", "/health", "health check", expect_json=False)

    def server_config(self) -> dict[str, Any]:
        """``GET /config``: server version, environment and feature flags."""
        answer = self._call("GET", "/config", "server config")
        if not isinstance(answer, dict):
            raise TransportError("server config: GMS answered with something that is not a JSON object")
        return answer

    # -- DataHub operations ----------------------------------------------------------------
    def list_executor_configs(self, pool_id: str) -> Lease | None:
        """The lease for ``pool_id``, or None when GMS lists no such (ready) pool: retry later."""
        issued_at = utcnow()
        data = self.graphql(LIST_EXECUTOR_CONFIGS, operation_name="listExecutorConfigs")
        listing = data.get("listExecutorConfigs") or {}
        entries = listing.get("executorConfigs") if isinstance(listing, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("executorId") == pool_id:
                return Lease.from_executor_config(entry, issued_at, http_hosts=(self.host,))
        return None

    def get_secret_values(self, names: Iterable[str]) -> dict[str, str]:
        """Plaintext values of the named DataHub secrets; names GMS does not know are left out."""
        wanted = sorted({n for n in names if n})
        values: dict[str, str] = {}
        for start in range(0, len(wanted), SECRETS_PER_CALL):
            chunk = wanted[start : start + SECRETS_PER_CALL]
            data = self.graphql(GET_SECRET_VALUES, {"input": {"secrets": chunk}}, "getSecretValues")
            for item in data.get("getSecretValues") or []:
                if not isinstance(item, dict) or item.get("name") not in chunk:
                    continue
                if isinstance(item.get("value"), str):
                    values[str(item["name"])] = item["value"]
        return values

    def batch_get_aspects(
        self, entity: str, urns: Sequence[str], aspect_names: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Read aspects of many entities (OpenAPI v2 batch): ``{urn: {aspect name: value}}``.

        Entities GMS does not return are absent; aspects an entity lacks are absent from its dict.
        A value is whatever GMS holds (normally an object; callers validate it).
        """
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(urns))
        path = f"/openapi/v2/entity/batch/{quote(entity, safe='')}"
        for start in range(0, len(unique), URNS_PER_BATCH_READ):
            body = {"urns": unique[start : start + URNS_PER_BATCH_READ], "aspectNames": list(aspect_names)}
            answer = self._call("POST", path, f"batch read of {entity}", body=body)
            found.update(_parse_batch(answer, aspect_names))
        return found

    def ingest_proposal(
        self, entity_type: str, entity_urn: str, aspect_name: str, aspect_value: Mapping[str, Any]
    ) -> None:
        """Write one aspect (an UPSERT MetadataChangeProposal), synchronously; its body is
        encoded once and sent in slices (``proposal``), not dumped as a string, dumped again and
        encoded whole."""
        body = ProposalBody(entity_type, entity_urn, aspect_name, aspect_value, int(time.time() * 1000))
        self._call("POST", "/aspects?action=ingestProposal", f"write of {aspect_name}", raw=body,
                   expect_json=False)

    # -- plumbing --------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, what: str, *, body: Any = None, raw: ProposalBody | None = None,
        expect_json: bool = True,
    ) -> Any:
        """One bounded call: its answer as JSON (or None), or a mapped error; never longer than
        ``limits.total_s`` and never more than ``limits.max_bytes`` read. ``body`` is sent as
        JSON; ``raw`` is a JSON body already encoded, sent as it is iterated."""
        self._check_quiet(what)
        limits = self.limits
        payload: bytes | ProposalBody | None = raw
        headers = self._headers
        if raw is not None:
            headers = {**self._json_headers, "Content-Length": str(len(raw))}
        elif body is not None:
            payload, headers = json.dumps(body, allow_nan=False).encode(), self._json_headers
        began = time.monotonic()
        try:
            answer = self._origin.call(method, path, limits, headers=headers, body=payload)
        except TooLarge:
            raise TransportError(
                f"{what}: GMS answered with more than {limits.max_bytes} bytes; abandoned"
            ) from None
        except CALL_ERRORS as exc:
            raise self._unreachable(what, exc, began + limits.total_s) from None
        status, content = answer.status, answer.content
        _raise_for_status(status, content, what, self._token)
        if not expect_json:
            return None
        try:
            return json.loads(content)
        except (ValueError, RecursionError):  # nesting too deep for the parser: not JSON to us
            raise TransportError(f"{what}: GMS answered HTTP {status} without JSON") from None

    def _unreachable(self, what: str, exc: Exception, at: float) -> TransportError:
        """The error for a call that got no (whole) answer; a timed-out call quiets the client."""
        if time.monotonic() >= at or isinstance(exc, TimeoutError):  # DeadlineExceeded included
            self._quiet_until = time.monotonic() + self.limits.total_s
            return TransportError(f"{what}: GMS did not answer within {self.limits.total_s:g}s")
        reason = _scrub(f"{type(exc).__name__}: {exc}", self._token)
        return TransportError(f"{what}: GMS unreachable ({reason})")

    def _check_quiet(self, what: str) -> None:
        """After a call ran into its deadline, fail fast for one deadline's length, so that an
        actor making several calls in a row blocks for at most one deadline, not one per call."""
        left = self._quiet_until - time.monotonic()
        if left > 0:
            raise TransportError(
                f"{what}: not tried; GMS did not answer the last call within "
                f"{self.limits.total_s:g}s (next try in {left:.1f}s)"
            )


def _raise_for_status(status: int, content: bytes, what: str, token: str) -> None:
    if 200 <= status < 300:
        return
    message = _server_message(content, token)
    text = f"{what}: GMS answered HTTP {status}" + (f": {message}" if message else "")
    if status < 400:  # 1xx, or a redirect: not followed (it would carry the token elsewhere)
        raise TransportError(text + " (not a success, and redirects are not followed: check gms.url)")
    if status == 429:
        raise ThrottledError(text)
    if status >= 500:
        raise TransportError(text)
    if status in (401, 403):
        raise NotAllowedError(text + " (check the token and its privileges)")
    if status in (400, 422) and "terminal" in message.lower():
        raise ImmutableError(text)
    raise BadInputError(text)


def _server_message(content: bytes, token: str) -> str:
    """A short, single-line reason from an error answer (DataHub puts it in ``message``)."""
    text = content[:_ERROR_BYTES].decode("utf-8", errors="replace")
    try:
        payload = json.loads(content) if len(content) <= _ERROR_BYTES else None
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        for key in ("message", "error", "detail"):
            if isinstance(payload.get(key), str):
                text = payload[key]
                break
    return _scrub(" ".join(text.split()), token)


def _graphql_error(what: str, errors: object, token: str) -> Exception:
    items = errors if isinstance(errors, list) else [errors]
    messages: list[str] = []
    codes: set[int] = set()
    for item in items[:3]:
        if isinstance(item, dict):
            messages.append(str(item.get("message", "")))
            extensions = item.get("extensions")
            code = extensions.get("code") if isinstance(extensions, dict) else None
            if isinstance(code, int):
                codes.add(code)
        else:
            messages.append(str(item))
    text = f"{what} failed: " + _scrub("; ".join(" ".join(m.split()) for m in messages), token)
    if codes & {401, 403}:
        return NotAllowedError(text)
    if 429 in codes:
        return ThrottledError(text)
    if any(code >= 500 for code in codes):
        return TransportError(text)
    return BadInputError(text)


def _scrub(text: str, token: str) -> str:
    if token:
        text = text.replace(token, "***")
    return text[:_MESSAGE_CHARS]


def _operation_of(query: str) -> str:
    words = query.replace("{", " ").replace("(", " ").split()
    return words[1] if len(words) > 1 and words[0] in ("query", "mutation") else "operation"


def _parse_batch(answer: object, aspect_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Read ``entities[i].aspects[name].value`` (or ``entities[i][name].value``, as v2 also writes).

    Any value an aspect holds is kept, also one that is not a JSON object: the caller's own
    validation then says what is wrong with it, rather than taking the aspect for absent.
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("entities", []), list):
        raise TransportError("batch read: GMS answered without an entities list")
    found: dict[str, dict[str, Any]] = {}
    for entity in answer.get("entities", []):
        if not isinstance(entity, dict) or not isinstance(entity.get("urn"), str):
            continue
        aspects = entity.get("aspects")
        holder: dict[str, Any] = aspects if isinstance(aspects, dict) else entity
        values: dict[str, Any] = {}
        for name in aspect_names:
            wrapped = holder.get(name)
            value = wrapped.get("value") if isinstance(wrapped, dict) else wrapped
            if value is not None:
                values[name] = value
        found[entity["urn"]] = values
    return found
