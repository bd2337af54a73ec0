"""The body of an ``ingestProposal`` call, encoded once.

DataHub takes an aspect as a JSON string inside the JSON body (``aspect.value``). Left to
``json.dumps`` and then to ``requests`` (``json=``), a result of megabytes of report is held
three times at once: the aspect's JSON, the body's JSON with that string escaped again, and the
body's bytes. Here the aspect is dumped once (ASCII), escaped once as a JSON string, and joined
with the small rest of the body; each big intermediate is dropped as soon as the next exists,
so at most two copies of the report's size are alive at a time, and then only the bytes sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any


def proposal_body(entity_type: str, entity_urn: str, aspect_name: str, aspect_value: Mapping[str, Any],
                  last_observed_ms: int) -> bytes:
    """``{"proposal": <an UPSERT MetadataChangeProposal>, "async": "false"}`` as UTF-8 bytes."""
    proposal = {
        "entityType": entity_type,
        "entityUrn": entity_urn,
        "changeType": "UPSERT",
        "aspectName": aspect_name,
        "systemMetadata": {"lastObserved": last_observed_ms, "runId": "no-run-id-provided"},
    }
    head = json.dumps(proposal)[:-1] + ', "aspect": {"contentType": "application/json", "value": '
    value = json.dumps(drop_nulls(aspect_value))  # ensure_ascii: no re-encoding below can grow it
    quoted: str = encode_basestring_ascii(value)
    del value
    text = "".join(('{"proposal": ', head, quoted, '}}, "async": "false"}'))
    del quoted
    return text.encode("ascii")


def drop_nulls(value: Any) -> Any:
    """DataHub's models omit absent optional fields rather than sending null."""
    if isinstance(value, Mapping):
        return {str(k): drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [drop_nulls(v) for v in value]
    return value
