"""Ingestion sources and execution requests, written the way DataHub's GraphQL resolvers do.

A source is aspect ``dataHubIngestionSourceInfo`` on ``urn:li:dataHubIngestionSource:<uuid>``.
Running it writes ``dataHubExecutionRequestInput`` on a new ``urn:li:dataHubExecutionRequest:<uuid>``:
task ``RUN_INGEST``, the recipe with ``run_id`` (the request URN) and ``pipeline_name`` (the source
URN, unless the recipe names one) injected, ``version`` (when the source pins one), the source's
extra args, then ``debug_mode``, as DataHub's resolver builds them; then the request goes to the
pool's queue. Cancelling writes a ``KILL`` signal aspect and nothing else, as in DataHub.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from executor.datahub.envelope import EXECUTION_REQUEST_PREFIX
from executor.errors import BadInputError
from executor.local.controlplane.aspects import Aspects
from executor.local.controlplane.storage import StoredAspect, now_ms

SOURCE_URN_PREFIX = "urn:li:dataHubIngestionSource:"
SOURCE_ASPECT = "dataHubIngestionSourceInfo"
INPUT_ASPECT = "dataHubExecutionRequestInput"
RESULT_ASPECT = "dataHubExecutionRequestResult"
SIGNAL_ASPECT = "dataHubExecutionRequestSignal"
DEFAULT_EXECUTOR_ID = "default"
ACTOR_URN = "urn:li:corpuser:datahub"
"""Every caller holds the one token, so every write is made by this actor."""


def parse_recipe(recipe: object) -> dict[str, Any]:
    """A recipe JSON string as an object; BadInputError otherwise."""
    if not isinstance(recipe, str):
        raise BadInputError("recipe must be a JSON string")
    try:
        value = json.loads(recipe)
    except ValueError:
        raise BadInputError("recipe is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadInputError("recipe must be a JSON object")
    return value


def inject_run_identity(recipe: str, run_id: str | None, pipeline_name: str) -> str:
    """Set ``run_id`` (always, when given) and ``pipeline_name`` (only if absent or empty)."""
    value = parse_recipe(recipe)
    if run_id is not None:
        value["run_id"] = run_id
    if not value.get("pipeline_name"):
        value["pipeline_name"] = pipeline_name
    return json.dumps(value)


class Ingestion:
    """Sources and execution requests over ``Aspects``; ``dispatch(pool, urn)`` queues a request."""

    def __init__(
        self, aspects: Aspects, pools: Callable[[], list[str]], dispatch: Callable[[str, str], None]
    ) -> None:
        self._aspects = aspects
        self._pools = pools
        self._dispatch = dispatch

    def _check_pool(self, executor_id: str) -> None:
        pools = self._pools()
        if executor_id not in pools:
            raise BadInputError(f"unknown executorId {executor_id!r}; pools here: {', '.join(pools)}")

    # -- sources ----------------------------------------------------------------------------

    def source_info(self, source: dict[str, Any]) -> dict[str, Any]:
        """The ``dataHubIngestionSourceInfo`` aspect for a GraphQL ``UpdateIngestionSourceInput``."""
        config = source.get("config") or {}
        parse_recipe(config.get("recipe"))
        executor_id = config.get("executorId") or DEFAULT_EXECUTOR_ID
        self._check_pool(executor_id)
        info: dict[str, Any] = {"name": source["name"], "type": source["type"]}
        if source.get("schedule"):
            info["schedule"] = {k: source["schedule"][k] for k in ("interval", "timezone")}
        aspect_config: dict[str, Any] = {"recipe": config["recipe"], "executorId": executor_id}
        if config.get("version") is not None:
            aspect_config["version"] = config["version"]
        if config.get("debugMode") is not None:
            aspect_config["debugMode"] = bool(config["debugMode"])
        if config.get("extraArgs"):
            aspect_config["extraArgs"] = {e["key"]: e["value"] for e in config["extraArgs"]}
        info["config"] = aspect_config
        return info

    def create_source(self, source: dict[str, Any]) -> str:
        """Store a new source; returns its URN."""
        urn = SOURCE_URN_PREFIX + str(uuid.uuid4())
        return self._aspects.put(urn, SOURCE_ASPECT, self.source_info(source))

    def update_source(self, urn: str, source: dict[str, Any]) -> str:
        """Replace an existing source's info; returns its URN."""
        self.require_source(urn)
        return self._aspects.put(urn, SOURCE_ASPECT, self.source_info(source))

    def delete_source(self, urn: str) -> str:
        """Remove a source (its past requests stay); returns its URN."""
        self._aspects.delete_entity(urn)
        return urn

    def source(self, urn: str) -> dict[str, Any] | None:
        """A source's info, or None."""
        return self._aspects.value(urn, SOURCE_ASPECT) if urn.startswith(SOURCE_URN_PREFIX) else None

    def require_source(self, urn: str) -> dict[str, Any]:
        """A source's info; BadInputError if there is none."""
        info = self.source(urn)
        if info is None:
            raise BadInputError(f"Failed to find ingestion source with urn {urn}")
        return info

    def sources(self) -> list[StoredAspect]:
        """Every source, oldest first."""
        return self._aspects.latest(aspect=SOURCE_ASPECT)

    # -- execution requests -----------------------------------------------------------------

    def run_source(self, source_urn: str) -> str:
        """Create a RUN_INGEST request for a source and queue it; returns the request URN."""
        config = self.require_source(source_urn)["config"]
        executor_id = config.get("executorId") or DEFAULT_EXECUTOR_ID
        self._check_pool(executor_id)
        urn = EXECUTION_REQUEST_PREFIX + str(uuid.uuid4())
        args = {"recipe": inject_run_identity(config["recipe"], urn, source_urn)}
        if (config.get("version") or "").strip():
            args["version"] = config["version"].strip()
        args.update(config.get("extraArgs") or {})
        args["debug_mode"] = "true" if config.get("debugMode") else "false"
        source = {"type": "MANUAL_INGESTION_SOURCE", "ingestionSource": source_urn}
        return self._create_request(urn, "RUN_INGEST", args, executor_id, source)

    def test_connection(self, recipe: str, version: str | None, executor_id: str | None) -> str:
        """Create a TEST_CONNECTION request and queue it; returns the request URN."""
        executor_id = executor_id or DEFAULT_EXECUTOR_ID
        self._check_pool(executor_id)
        urn = EXECUTION_REQUEST_PREFIX + str(uuid.uuid4())
        args = {"recipe": inject_run_identity(recipe, None, urn)}
        if (version or "").strip():
            args["version"] = (version or "").strip()
        source = {"type": "MANUAL_TEST_CONNECTION"}
        return self._create_request(urn, "TEST_CONNECTION", args, executor_id, source)

    def _create_request(
        self, urn: str, task: str, args: dict[str, str], executor_id: str, source: dict[str, str]
    ) -> str:
        request = {
            "task": task,
            "args": args,
            "executorId": executor_id,
            "source": source,
            "requestedAt": now_ms(),
            "actorUrn": ACTOR_URN,
        }
        self._aspects.put(urn, INPUT_ASPECT, request)
        self._dispatch(executor_id, urn)
        return urn

    def cancel(self, request_urn: str) -> str:
        """Write the KILL signal for a request; returns the request URN."""
        request = self._aspects.value(request_urn, INPUT_ASPECT)
        if request is None:
            raise BadInputError(f"no execution request {request_urn}")
        signal = {
            "signal": "KILL",
            "executorId": request.get("executorId") or DEFAULT_EXECUTOR_ID,
            "createdAt": {"time": now_ms(), "actor": ACTOR_URN},
        }
        return self._aspects.put(request_urn, SIGNAL_ASPECT, signal)

    def request(self, urn: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """A request's input and result (None if it has none yet); None if there is no request."""
        request = self._aspects.value(urn, INPUT_ASPECT)
        if request is None:
            return None
        return request, self._aspects.value(urn, RESULT_ASPECT)

    def request_urns(self, source_urn: str | None = None) -> list[str]:
        """Request URNs, newest first, optionally only those of one source."""
        rows = [
            r
            for r in self._aspects.latest(aspect=INPUT_ASPECT)
            if source_urn is None or (r.value.get("source") or {}).get("ingestionSource") == source_urn
        ]
        rows.sort(key=lambda r: int(r.value.get("requestedAt") or 0), reverse=True)
        return [r.urn for r in rows]
