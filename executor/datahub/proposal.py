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
from typing import Any

from executor.json_slices import ascii_slices, dump_pieces, escaped_length

SEND_SLICE = 64 * 1024


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
        self._pieces = dump_pieces(drop_nulls(aspect_value))
        self._tail = b'"}}, "async": "false"}'
        self._length = len(self._head) + escaped_length(self._pieces) + len(self._tail)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        """Slices of about ``SEND_SLICE``, each one ``send``: a small result is a single one."""
        pending = self._head
        for chunk in ascii_slices(self._pieces, SEND_SLICE, escaped=True):
            if len(pending) + len(chunk) > SEND_SLICE:
                yield pending
                pending = chunk
            else:
                pending += chunk
        yield pending + self._tail


def drop_nulls(value: Any) -> Any:
    """DataHub's models omit absent optional fields rather than sending null."""
    if isinstance(value, Mapping):
        return {str(k): drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [drop_nulls(v) for v in value]
    return value
