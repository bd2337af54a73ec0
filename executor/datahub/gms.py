"""The GMS client: the few DataHub calls the executor makes, with errors mapped to ``errors.py``.

One ``requests.Session`` per client (clients are not shared between actors), a bearer token,
and a timeout on every call, so an actor that calls GMS is never blocked for longer than
``timeout_s``. HTTP outcomes become the executor's exception hierarchy:

    connection error, timeout, 5xx, non-JSON answer   -> TransportError   (retry)
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
from urllib.parse import quote

import requests

from executor.datahub.lease import Lease, utcnow
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
_MESSAGE_CHARS = 300

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
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError("GMS url", ["must start with http:// or https://"])
        if timeout_s <= 0:
            raise ConfigError("GMS client", ["timeout_s must be > 0"])
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token or ""
        self._session = requests.Session()
        self._session.verify = verify
        # Passed with each request: requests lets HTTP(S)_PROXY from the environment override
        # a session's own proxies, and a configured proxy must win. A None value means "direct"
        # for that scheme (requests then skips the environment's proxy too).
        self._proxies: Any = dict(proxies) if proxies else None
        self._session.headers["X-RestLi-Protocol-Version"] = "2.0.0"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"GmsClient({self.url!r})"

    def __enter__(self) -> GmsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the session's connections."""
        self._session.close()

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
        for entry in entries or []:
            if isinstance(entry, dict) and entry.get("executorId") == pool_id:
                return Lease.from_executor_config(entry, issued_at)
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
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """Read aspects of many entities (OpenAPI v2 batch): ``{urn: {aspect name: value}}``.

        Entities GMS does not return are absent; aspects an entity lacks are absent from its dict.
        """
        found: dict[str, dict[str, dict[str, Any]]] = {}
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
        """Write one aspect (an UPSERT MetadataChangeProposal), synchronously."""
        proposal = {
            "entityType": entity_type,
            "entityUrn": entity_urn,
            "changeType": "UPSERT",
            "aspectName": aspect_name,
            "aspect": {"value": json.dumps(_drop_nulls(aspect_value)), "contentType": "application/json"},
            "systemMetadata": {"lastObserved": int(time.time() * 1000), "runId": "no-run-id-provided"},
        }
        body = {"proposal": proposal, "async": "false"}
        self._call("POST", "/aspects?action=ingestProposal", f"write of {aspect_name}", body=body,
                   expect_json=False)

    # -- plumbing --------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, what: str, *, body: Any = None, expect_json: bool = True
    ) -> Any:
        try:
            response = self._session.request(
                method, self.url + path, json=body, proxies=self._proxies,
                timeout=(self.timeout_s, self.timeout_s),
            )
        except requests.Timeout:
            raise TransportError(f"{what}: GMS did not answer within {self.timeout_s:g}s") from None
        except requests.RequestException as exc:
            reason = _scrub(f"{type(exc).__name__}: {exc}", self._token)
            raise TransportError(f"{what}: GMS unreachable ({reason})") from None
        with response:
            _raise_for_status(response, what, self._token)
            if not expect_json:
                return None
            try:
                return response.json()
            except ValueError:
                status = response.status_code
                raise TransportError(f"{what}: GMS answered HTTP {status} without JSON") from None


def _raise_for_status(response: requests.Response, what: str, token: str) -> None:
    status = response.status_code
    if status < 400:
        return
    message = _server_message(response, token)
    text = f"{what}: GMS answered HTTP {status}" + (f": {message}" if message else "")
    if status == 429:
        raise ThrottledError(text)
    if status >= 500:
        raise TransportError(text)
    if status in (401, 403):
        raise NotAllowedError(text + " (check the token and its privileges)")
    if status in (400, 422) and "terminal" in message.lower():
        raise ImmutableError(text)
    raise BadInputError(text)


def _server_message(response: requests.Response, token: str) -> str:
    """A short, single-line reason from an error answer (DataHub puts it in ``message``)."""
    text = response.text or ""
    try:
        payload = response.json()
    except ValueError:
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


def _parse_batch(answer: object, aspect_names: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Read ``entities[i].aspects[name].value`` (or ``entities[i][name].value``, as v2 also writes)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("entities", []), list):
        raise TransportError("batch read: GMS answered without an entities list")
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for entity in answer.get("entities", []):
        if not isinstance(entity, dict) or not isinstance(entity.get("urn"), str):
            continue
        aspects = entity.get("aspects")
        holder: dict[str, Any] = aspects if isinstance(aspects, dict) else entity
        values: dict[str, dict[str, Any]] = {}
        for name in aspect_names:
            wrapped = holder.get(name)
            value = wrapped.get("value") if isinstance(wrapped, dict) else None
            if isinstance(value, dict):
                values[name] = value
        found[entity["urn"]] = values
    return found


def _drop_nulls(value: Any) -> Any:
    """DataHub's models omit absent optional fields rather than sending null."""
    if isinstance(value, Mapping):
        return {str(k): _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_nulls(v) for v in value]
    return value
