"""The body of an ``ingestProposal`` call, encoded once and sent in slices.

DataHub takes an aspect as a JSON string inside the JSON body (``aspect.value``). Left to
``json.dumps`` and then to ``requests`` (``json=``), a result of megabytes of report is held
several times at once: the aspect's JSON, the body's JSON with that string escaped again, and
the body's bytes. Here the aspect is dumped once, into the encoder's pieces (never joined), and
the body is an iterable of bytes with a known length: each piece is escaped as part of a JSON
string and turned into bytes a slice at a time while the request is sent. The one full copy of a
report alive is its escaped piece of the dump.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

SEND_SLICE = 64 * 1024
_ENCODER = json.JSONEncoder()  # ensure_ascii: the pieces are ASCII without control characters


class ProposalBody:
    """``{"proposal": <an UPSERT MetadataChangeProposal>, "async": "false"}`` as bytes, made as
    they are sent; iterable again (a resend starts over) and sized (``Content-Length``)."""

    def __init__(self, entity_type: str, entity_urn: str, aspect_name: str, aspect_value: Mapping[str, Any],
                 last_observed_ms: int) -> None:
        proposal = {
            "entityType": entity_type,
            "entityUrn": entity_urn,
            "changeType": "UPSERT",
            "aspectName": aspect_name,
            "systemMetadata": {"lastObserved": last_observed_ms, "runId": "no-run-id-provided"},
        }
        self._head = ('{"proposal": ' + json.dumps(proposal)[:-1]
                      + ', "aspect": {"contentType": "application/json", "value": "').encode("ascii")
        self._pieces = list(_ENCODER.iterencode(drop_nulls(aspect_value)))
        self._tail = b'"}}, "async": "false"}'
        # Escaping an ASCII dump as a JSON string only adds a backslash before " and \.
        escaped = sum(len(p) + p.count("\\") + p.count('"') for p in self._pieces)
        self._length = len(self._head) + escaped + len(self._tail)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        for piece in self._pieces:
            for start in range(0, len(piece), SEND_SLICE):
                yield encode_basestring_ascii(piece[start : start + SEND_SLICE])[1:-1].encode("ascii")
        yield self._tail


def drop_nulls(value: Any) -> Any:
    """DataHub's models omit absent optional fields rather than sending null."""
    if isinstance(value, Mapping):
        return {str(k): drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [drop_nulls(v) for v in value]
    return value
