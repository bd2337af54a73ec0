"""Writing aspects as GMS does: parse a MetadataChangeProposal, validate, apply the rules, store.

Both REST ingestion (``ingestProposal``, ``ingestProposalBatch``) and the GraphQL resolvers
write through ``Aspects.write``, so every aspect meets the same checks: the model
(``validation``) and GMS's rule that a ``dataHubExecutionRequestResult`` is immutable once its
status is terminal (SUCCESS, CANCELLED, ABORTED, DUPLICATE). That check runs inside the write
transaction, so two racing writers cannot both pass it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from executor.errors import BadInputError, ImmutableError
from executor.local.controlplane.storage import AspectWrite, Storage, StoredAspect
from executor.local.controlplane.validation import validate_aspect

RESULT_ASPECT = "dataHubExecutionRequestResult"
IMMUTABLE_STATUSES = frozenset({"SUCCESS", "CANCELLED", "ABORTED", "DUPLICATE"})
"""Statuses after which GMS refuses any further result write."""
WRITE_CHANGE_TYPES = frozenset({"UPSERT", "CREATE", "CREATE_ENTITY", "RESTATE"})


@dataclass(frozen=True)
class Proposal:
    """A parsed MetadataChangeProposal: one aspect of one entity."""

    urn: str
    entity_type: str
    aspect: str
    value: dict[str, Any]
    system_metadata: dict[str, Any] | None = None


def entity_type_of(urn: str) -> str:
    """``dataset`` for ``urn:li:dataset:(...)``; BadInputError for a malformed URN."""
    parts = urn.split(":", 3)
    if len(parts) < 4 or parts[0] != "urn" or parts[1] != "li" or not parts[2] or not parts[3]:
        raise BadInputError(f"malformed urn: {urn!r}")
    return parts[2]


def parse_proposal(mcp: object) -> Proposal:
    """Read one MCP in the JSON form DataHub's emitters send; BadInputError says what is wrong."""
    if not isinstance(mcp, dict):
        raise BadInputError("a proposal must be a JSON object")
    entity_type = mcp.get("entityType")
    aspect_name = mcp.get("aspectName")
    if not isinstance(entity_type, str) or not entity_type:
        raise BadInputError("proposal.entityType is required")
    if not isinstance(aspect_name, str) or not aspect_name:
        raise BadInputError("proposal.aspectName is required")
    change = mcp.get("changeType", "UPSERT")
    if change not in WRITE_CHANGE_TYPES:
        raise BadInputError(f"changeType {change} is not supported by the local control plane")
    urn = mcp.get("entityUrn")
    if urn is None and mcp.get("entityKeyAspect") is not None:
        urn = _urn_from_key(entity_type, _generic_value(mcp["entityKeyAspect"], "entityKeyAspect"))
    if not isinstance(urn, str):
        raise BadInputError("proposal needs entityUrn or entityKeyAspect")
    if entity_type_of(urn) != entity_type:
        raise BadInputError(f"urn {urn} is not of entity type {entity_type}")
    value = _generic_value(mcp.get("aspect"), "aspect")
    system_metadata = mcp.get("systemMetadata")
    if system_metadata is not None and not isinstance(system_metadata, dict):
        raise BadInputError("proposal.systemMetadata must be an object")
    return Proposal(urn, entity_type, aspect_name, value, system_metadata)


def _generic_value(generic: object, where: str) -> dict[str, Any]:
    """The object inside a GenericAspect ``{"value": "<json>", "contentType": ...}``."""
    if not isinstance(generic, dict) or "value" not in generic:
        raise BadInputError(f"proposal.{where} must be {{'value': ..., 'contentType': ...}}")
    content_type = generic.get("contentType", "application/json")
    if content_type != "application/json":
        raise BadInputError(f"proposal.{where}.contentType {content_type} is not supported")
    raw = generic["value"]
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except ValueError:
        raise BadInputError(f"proposal.{where}.value is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadInputError(f"proposal.{where}.value must encode a JSON object")
    return value


def _urn_from_key(entity_type: str, key: dict[str, Any]) -> str:
    """GMS's rule: one key field -> ``urn:li:type:value``; several -> ``urn:li:type:(a,b)``."""
    from datahub.metadata.schema_classes import KEY_ASPECTS

    cls = KEY_ASPECTS.get(entity_type)
    order = [f.name for f in cls.RECORD_SCHEMA.fields] if cls is not None else list(key)
    parts = [str(key[name]) for name in order if name in key]
    if not parts:
        raise BadInputError("proposal.entityKeyAspect has no key fields")
    return f"urn:li:{entity_type}:{parts[0] if len(parts) == 1 else '(' + ','.join(parts) + ')'}"


def _refuse_after_terminal(current: dict[str, Any] | None) -> None:
    if current is not None and current.get("status") in IMMUTABLE_STATUSES:
        raise ImmutableError(
            f"execution request result is already terminal ({current['status']}); "
            "it cannot be changed any more"
        )


class Aspects:
    """Validated, rule-checked aspect writes and reads over ``Storage``."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def write(self, proposals: Sequence[Proposal]) -> list[str]:
        """Validate all, then store all atomically; returns the URNs in order.

        Raises BadInputError for a payload that does not fit its model and ImmutableError for a
        result write after a terminal status; in both cases nothing is stored.
        """
        for p in proposals:
            validate_aspect(p.aspect, p.value)
        writes = [
            AspectWrite(
                urn=p.urn,
                entity_type=p.entity_type,
                aspect=p.aspect,
                value=p.value,
                system_metadata=p.system_metadata,
                precondition=_refuse_after_terminal if p.aspect == RESULT_ASPECT else None,
            )
            for p in proposals
        ]
        self._storage.put_aspects(writes)
        return [p.urn for p in proposals]

    def put(self, urn: str, aspect: str, value: dict[str, Any]) -> str:
        """Write one aspect from inside the control plane (same checks as REST)."""
        return self.write([Proposal(urn, entity_type_of(urn), aspect, value)])[0]

    def get(self, urn: str, aspect: str, version: int = 0) -> StoredAspect | None:
        """One version of an aspect (0 = latest)."""
        return self._storage.get_aspect(urn, aspect, version)

    def value(self, urn: str, aspect: str) -> dict[str, Any] | None:
        """The latest value of an aspect, or None."""
        stored = self._storage.get_aspect(urn, aspect)
        return None if stored is None else stored.value

    def latest(
        self, entity_type: str | None = None, aspect: str | None = None, urn: str | None = None
    ) -> list[StoredAspect]:
        """Latest version of each matching aspect, in order of first write."""
        return self._storage.latest_aspects(entity_type, aspect, urn)

    def history(self, urn: str, aspect: str) -> list[StoredAspect]:
        """Every version, oldest first."""
        return self._storage.aspect_history(urn, aspect)

    def delete_entity(self, urn: str) -> None:
        """Remove an entity and all its aspects."""
        self._storage.delete_entity(urn)
