"""The REST part of the GMS API: ingestion of proposals, aspect reads, the OpenAPI batch read.

Shapes follow what DataHub's clients send and parse (checked against the installed
acryl-datahub): ``ingestProposal`` takes ``{"proposal": MCP}``, ``ingestProposalBatch``
``{"proposals": [...]}``; ``GET /aspects/<urn>?aspect=&version=`` answers
``{"aspect": {<Pegasus record name>: value}, "version": n}`` (what ``DataHubGraph.get_aspect``
unwraps); the OpenAPI v2 batch read answers ``{"entities": [{"urn", "aspects": {name: {"value"}}}]}``.
``/config`` carries ``"noCode": "true"`` and no server version, which keeps every DataHub client
on ``ingestProposal`` (the SDK only moves to OpenAPI ingestion for a known new-enough version).
Every handler returns ``(status, payload)``; errors use Rest.li's error body.
"""

from __future__ import annotations

import json
from typing import Any

from executor.errors import BadInputError, ImmutableError
from executor.local.controlplane.aspects import Aspects, entity_type_of, parse_proposal
from executor.local.controlplane.validation import record_fullname

Answer = tuple[int, Any]
MAX_SCROLL = 1000


def restli_error(status: int, message: str) -> Answer:
    """An error in the shape DataHub's emitter reads (``message``)."""
    return status, {
        "exceptionClass": "com.linkedin.restli.server.RestLiServiceException",
        "message": message,
        "status": status,
    }


def server_config() -> dict[str, Any]:
    """``GET /config``: enough for DataHub's clients to accept this server as GMS."""
    return {
        "noCode": "true",
        "statefulIngestionCapable": True,
        "supportsImpactAnalysis": False,
        "patchCapable": False,
        "datahub": {"serverType": "dev", "serverEnv": "core"},
        "managedIngestion": {"enabled": True},
        "telemetry": {"enabledCli": False, "enabledIngestion": False},
        "remoteExecutorControlPlane": True,
    }


class RestApi:
    """REST handlers over ``Aspects``."""

    def __init__(self, aspects: Aspects) -> None:
        self._aspects = aspects

    def ingest(self, body: object, batch: bool) -> Answer:
        """``ingestProposal`` / ``ingestProposalBatch``: validate, apply GMS's rules, store."""
        if not isinstance(body, dict):
            return restli_error(400, "body must be a JSON object")
        try:
            if batch:
                raw = body.get("proposals")
                if not isinstance(raw, list):
                    return restli_error(400, "body.proposals must be a list")
                proposals = [parse_proposal(p) for p in raw]
            else:
                proposals = [parse_proposal(body.get("proposal"))]
            urns = self._aspects.write(proposals)
        except ImmutableError as exc:
            return restli_error(422, str(exc))
        except BadInputError as exc:
            return restli_error(422, str(exc))
        return 200, {"value": urns if batch else urns[0]}

    def get_aspect(self, urn: str, params: dict[str, list[str]]) -> Answer:
        """``GET /aspects/<urn>?aspect=<name>&version=<n>`` (0 = latest, 1 = oldest)."""
        aspect = (params.get("aspect") or [""])[0]
        if not aspect:
            return restli_error(400, "query parameter 'aspect' is required")
        try:
            version = int((params.get("version") or ["0"])[0])
        except ValueError:
            return restli_error(400, "query parameter 'version' must be an integer")
        stored = self._aspects.get(urn, aspect, version)
        if stored is None:
            return restli_error(404, f"no aspect {aspect} (version {version}) for {urn}")
        return 200, {"urn": urn, "version": version, "aspect": {record_fullname(aspect): stored.value}}

    def timeseries_values(self, body: object) -> Answer:
        """``getTimeseriesAspectValues``: newest first, ``EQUAL`` filters on top-level fields.

        Enough for stateful ingestion, whose checkpoints the CLI reads this way (newest
        checkpoint of a pipeline); DataHub's time-range and other conditions are not offered.
        """
        if not isinstance(body, dict) or not isinstance(body.get("urn"), str) or not body.get("aspect"):
            return restli_error(400, "body must hold 'urn' and 'aspect'")
        try:
            limit = max(1, min(MAX_SCROLL, int(body.get("limit", 10))))
        except (TypeError, ValueError):
            return restli_error(400, "limit must be an integer")
        wanted = _equal_filters(body.get("filter"))
        if wanted is None:
            return restli_error(400, "only {'or': [{'and': [EQUAL criteria]}]} filters are supported")
        values = []
        for stored in reversed(self._aspects.history(body["urn"], str(body["aspect"]))):
            if all(str(stored.value.get(field)) in accepted for field, accepted in wanted.items()):
                values.append(
                    {"aspect": {"value": json.dumps(stored.value), "contentType": "application/json"}}
                )
            if len(values) >= limit:
                break
        return 200, {"value": {"values": values, "limit": limit}}

    def batch_get(self, entity: str, body: object) -> Answer:
        """``POST /openapi/v2/entity/batch/<entity>``: urns that have any asked aspect."""
        if not isinstance(body, dict) or not isinstance(body.get("urns"), list):
            return restli_error(400, "body must be {'urns': [...], 'aspectNames': [...]}")
        names = body.get("aspectNames")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            return restli_error(400, "aspectNames must be a list of strings")
        entities = []
        for urn in body["urns"]:
            if not isinstance(urn, str):
                return restli_error(400, "urns must be strings")
            try:
                if entity_type_of(urn) != entity:
                    return restli_error(400, f"urn {urn} is not a {entity}")
            except BadInputError as exc:
                return restli_error(400, str(exc))
            aspects = self._entity_aspects(urn, names)
            if aspects:
                entities.append({"urn": urn, "aspects": aspects})
        return 200, {"entities": entities}

    def scroll(self, entity: str, params: dict[str, list[str]]) -> Answer:
        """``GET /openapi/v2/entity/<entity>``: list entities of a type (presence records, ...).

        ``aspectNames`` (repeatable) narrows the aspects, ``count`` the page size, and the
        answer's ``scrollId`` (an offset here) fetches the next page.
        """
        names = params.get("aspectNames") or params.get("aspects") or None
        try:
            count = max(1, min(MAX_SCROLL, int((params.get("count") or ["100"])[0])))
            offset = int((params.get("scrollId") or ["0"])[0] or 0)
        except ValueError:
            return restli_error(400, "count and scrollId must be integers")
        urns: list[str] = []
        for row in self._aspects.latest(entity_type=entity):
            if row.urn not in urns and (names is None or row.aspect in names):
                urns.append(row.urn)
        page = urns[offset : offset + count]
        entities = [{"urn": u, "aspects": self._entity_aspects(u, names)} for u in page]
        answer: dict[str, Any] = {"entities": entities}
        if offset + count < len(urns):
            answer["scrollId"] = str(offset + count)
        return 200, answer

    def _entity_aspects(self, urn: str, names: list[str] | None) -> dict[str, Any]:
        found = {}
        for row in self._aspects.latest(urn=urn):
            if names is None or row.aspect in names:
                entry: dict[str, Any] = {"value": row.value}
                if row.system_metadata is not None:
                    entry["systemMetadata"] = row.system_metadata
                found[row.aspect] = entry
        return found


def _equal_filters(raw: object) -> dict[str, set[str]] | None:
    """``{"or": [{"and": [{"field", "values", "condition": "EQUAL"}]}]}`` -> field -> values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not isinstance(raw.get("or", []), list):
        return None
    wanted: dict[str, set[str]] = {}
    for clause in raw.get("or", []):
        for criterion in clause.get("and", []) if isinstance(clause, dict) else []:
            if not isinstance(criterion, dict) or criterion.get("condition", "EQUAL") != "EQUAL":
                return None
            wanted.setdefault(str(criterion.get("field")), set()).update(
                map(str, criterion.get("values", []))
            )
    return wanted
