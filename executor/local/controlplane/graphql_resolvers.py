"""GraphQL resolvers: root fields of ``graphql_schema.SDL`` mapped onto the control plane's services.

graphql-core's default resolver calls a callable found under a field's name with
``(info, **arguments)``, so the root value is a plain dict of functions and nested objects are
dicts (a nested callable such as ``IngestionSource.executions`` works the same way). Every
function takes the services from ``info.context`` (an ``ApiContext``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLResolveInfo

from executor.datahub.envelope import EXECUTION_REQUEST_PREFIX
from executor.local.controlplane.ingestion import Ingestion
from executor.local.controlplane.secrets import Secrets

Info = GraphQLResolveInfo[Any]
DEFAULT_PAGE = 20
MAX_PAGE = 1000


@dataclass(frozen=True)
class ApiContext:
    """What resolvers reach: the services, and the lease issuer for ``listExecutorConfigs``."""

    secrets: Secrets
    ingestion: Ingestion
    executor_configs: Callable[[list[str] | None], list[dict[str, Any]]]


def _ctx(info: Info) -> ApiContext:
    context: ApiContext = info.context
    return context


def _page(spec: dict[str, Any] | None) -> tuple[int, int]:
    spec = spec or {}
    start = max(0, int(spec.get("start") or 0))
    count = spec.get("count")
    count = DEFAULT_PAGE if count is None else max(0, min(MAX_PAGE, int(count)))
    return start, count


def _entries(mapping: dict[str, str] | None) -> list[dict[str, str]] | None:
    return None if mapping is None else [{"key": k, "value": v} for k, v in mapping.items()]


def _matches(query: str | None, *fields: object) -> bool:
    needle = (query or "").strip().lower()
    if needle in ("", "*"):
        return True
    return any(needle in str(f).lower() for f in fields if f is not None)


# -- executor configs and secrets -------------------------------------------------------------


def list_executor_configs(info: Info, input: dict[str, Any] | None = None) -> dict[str, Any]:
    """One fresh lease (STS credentials) per pool, narrowed to ``executorIds`` when given."""
    configs = _ctx(info).executor_configs((input or {}).get("executorIds"))
    return {"total": len(configs), "executorConfigs": configs}


def get_secret_values(info: Info, input: dict[str, Any]) -> list[dict[str, str]]:
    """Plain values; names that do not exist are left out, as in DataHub."""
    values = _ctx(info).secrets.values(list(input["secrets"]))
    return [{"name": n, "value": v} for n, v in values.items()]


def list_secrets(info: Info, input: dict[str, Any]) -> dict[str, Any]:
    """Names and descriptions, never values."""
    start, count = _page(input)
    found = _ctx(info).secrets.search(input.get("query"))
    page = [
        {"urn": s.urn, "name": s.name, "description": s.description} for s in found[start : start + count]
    ]
    return {"start": start, "count": len(page), "total": len(found), "secrets": page}


def create_secret(info: Info, input: dict[str, Any]) -> str:
    return _ctx(info).secrets.create(input["name"], input["value"], input.get("description"))


def update_secret(info: Info, input: dict[str, Any]) -> str:
    return _ctx(info).secrets.update(input["urn"], input["name"], input["value"], input.get("description"))


def delete_secret(info: Info, urn: str) -> str:
    return _ctx(info).secrets.delete(urn)


# -- ingestion sources ------------------------------------------------------------------------


def _source_shape(ingestion: Ingestion, urn: str, value: dict[str, Any]) -> dict[str, Any]:
    config = value.get("config") or {}

    def executions(_info: Info, start: int | None = None, count: int | None = None) -> Any:
        return _requests_page(ingestion, {"start": start, "count": count}, source_urn=urn)

    return {
        "urn": urn,
        "type": value.get("type"),
        "name": value.get("name"),
        "schedule": value.get("schedule"),
        "config": {
            "recipe": config.get("recipe"),
            "executorId": config.get("executorId") or "default",
            "version": config.get("version"),
            "debugMode": config.get("debugMode"),
            "extraArgs": _entries(config.get("extraArgs")),
        },
        "executions": executions,
    }


def ingestion_source(info: Info, urn: str) -> dict[str, Any] | None:
    ingestion = _ctx(info).ingestion
    value = ingestion.source(urn)
    return None if value is None else _source_shape(ingestion, urn, value)


def list_ingestion_sources(info: Info, input: dict[str, Any]) -> dict[str, Any]:
    ingestion = _ctx(info).ingestion
    start, count = _page(input)
    found = [
        s
        for s in ingestion.sources()
        if _matches(input.get("query"), s.urn, s.value.get("name"), s.value.get("type"))
    ]
    page = [_source_shape(ingestion, s.urn, s.value) for s in found[start : start + count]]
    return {"start": start, "count": len(page), "total": len(found), "ingestionSources": page}


def create_ingestion_source(info: Info, input: dict[str, Any]) -> str:
    return _ctx(info).ingestion.create_source(input)


def update_ingestion_source(info: Info, urn: str, input: dict[str, Any]) -> str:
    return _ctx(info).ingestion.update_source(urn, input)


def delete_ingestion_source(info: Info, urn: str) -> str:
    return _ctx(info).ingestion.delete_source(urn)


# -- execution requests -----------------------------------------------------------------------


def _request_shape(ingestion: Ingestion, urn: str) -> dict[str, Any] | None:
    found = ingestion.request(urn)
    if found is None:
        return None
    request, result = found
    source = request.get("source") or {}
    source_urn = source.get("ingestionSource")
    source_value = ingestion.source(source_urn) if isinstance(source_urn, str) else None
    return {
        "urn": urn,
        "type": "EXECUTION_REQUEST",
        "id": urn[len(EXECUTION_REQUEST_PREFIX) :],
        "input": {
            "task": request.get("task"),
            "source": {"type": source.get("type"), "ingestionSource": source_urn},
            "arguments": _entries(request.get("args")),
            "requestedAt": request.get("requestedAt"),
            "actorUrn": request.get("actorUrn"),
            "executorId": request.get("executorId"),
        },
        "result": result,
        "source": None if source_value is None else _source_shape(ingestion, str(source_urn), source_value),
    }


def _requests_page(
    ingestion: Ingestion, spec: dict[str, Any], source_urn: str | None = None
) -> dict[str, Any]:
    start, count = _page(spec)
    for f in spec.get("filters") or []:
        if f.get("field") == "ingestionSource":
            values = f.get("values") or ([f["value"]] if f.get("value") else [])
            source_urn = values[0] if values else source_urn
    urns = [u for u in ingestion.request_urns(source_urn) if _matches(spec.get("query"), u)]
    page = [_request_shape(ingestion, u) for u in urns[start : start + count]]
    return {"start": start, "count": len(page), "total": len(urns), "executionRequests": page}


def execution_request(info: Info, urn: str) -> dict[str, Any] | None:
    return _request_shape(_ctx(info).ingestion, urn)


def list_execution_requests(info: Info, input: dict[str, Any]) -> dict[str, Any]:
    return _requests_page(_ctx(info).ingestion, input)


def create_ingestion_execution_request(info: Info, input: dict[str, Any]) -> str:
    return _ctx(info).ingestion.run_source(input["ingestionSourceUrn"])


def cancel_ingestion_execution_request(info: Info, input: dict[str, Any]) -> str:
    return _ctx(info).ingestion.cancel(input["executionRequestUrn"])


def create_test_connection_request(info: Info, input: dict[str, Any]) -> str:
    ingestion = _ctx(info).ingestion
    return ingestion.test_connection(input["recipe"], input.get("version"), input.get("executorId"))


ROOT: dict[str, Callable[..., Any]] = {
    "listExecutorConfigs": list_executor_configs,
    "getSecretValues": get_secret_values,
    "listSecrets": list_secrets,
    "createSecret": create_secret,
    "updateSecret": update_secret,
    "deleteSecret": delete_secret,
    "ingestionSource": ingestion_source,
    "listIngestionSources": list_ingestion_sources,
    "createIngestionSource": create_ingestion_source,
    "updateIngestionSource": update_ingestion_source,
    "deleteIngestionSource": delete_ingestion_source,
    "executionRequest": execution_request,
    "listExecutionRequests": list_execution_requests,
    "createIngestionExecutionRequest": create_ingestion_execution_request,
    "cancelIngestionExecutionRequest": cancel_ingestion_execution_request,
    "createTestConnectionRequest": create_test_connection_request,
}
"""Root value for both Query and Mutation (their field names do not overlap)."""
