"""The SQS message that carries an execution request: encode (control plane) and decode (poller).

DataHub Cloud's executor is a Celery worker on SQS, so a message is a kombu envelope:
the SQS body is base64 of a JSON object whose ``headers.task`` names the task and whose
``headers.id`` is the execution-request URN; its ``body`` is a base64 Python *pickle*.
We read the headers only and never unpickle (a pickle is code execution for whoever can
write to the queue); GMS stays the only source of what runs. A plain JSON body
(``{"urn": ...}`` or ``{"executionRequestUrn": ...}``) is accepted as well. The local
control plane writes the same envelope with a JSON body instead of a pickle.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from executor.errors import BadInputError

INGESTION_TASK = "datahub_executor.worker.ingestion_request"
"""Task name the control plane writes; DataHub's names end in ``ingestion_request``."""

EXECUTION_REQUEST_PREFIX = "urn:li:dataHubExecutionRequest:"
URN_MAX_ENCODED_BYTES = 512
"""GMS rejects a URN longer than 512 bytes once URL-encoded (``URN_NUM_BYTES_LIMIT`` in
DataHub's ``UrnValidationUtil``, checked on every write), so no real request has a longer one."""
URN_DELIMITER = "\u241f"
"""DataHub's browse-path separator, which it forbids in any URN."""
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")
_URLENCODER_SAFE = frozenset(string.ascii_letters + string.digits + ".-*_")
MAX_MESSAGE_BYTES = 256 * 1024
"""SQS's own limit; anything larger did not come from a well-behaved producer."""


@dataclass(frozen=True)
class QueuedTask:
    """What a decoded message asks for: a task kind and the execution-request URN."""

    urn: str
    task: str
    """The full task name from the envelope (``""`` for a plain JSON body)."""

    @property
    def is_ingestion(self) -> bool:
        """True for tasks this executor runs (``...ingestion_request`` or plain JSON)."""
        return self.task == "" or self.task.endswith("ingestion_request")

    @property
    def request_id(self) -> str:
        """The id part of the URN."""
        return self.urn[len(EXECUTION_REQUEST_PREFIX) :]


def encode_envelope(urn: str, routing_key: str, payload: dict[str, Any] | None = None) -> str:
    """A kombu-style SQS body for ``urn`` with a JSON (never pickled) inner body."""
    inner = json.dumps([[], payload or {"urn": urn}, {"callbacks": None, "errbacks": None}])
    envelope = {
        "body": base64.b64encode(inner.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": INGESTION_TASK, "id": urn, "retries": 0},
        "properties": {
            "correlation_id": urn,
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "delivery_mode": 2,
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def decode_message(body: str) -> QueuedTask:
    """Read the URN and task name from an SQS body; raise ``BadInputError`` if it has none.

    Never includes the body in the error message: it may carry anything.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise BadInputError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    obj = _parse_json_object(body)
    if obj is None:
        try:
            decoded = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise BadInputError("message is neither JSON nor base64 JSON") from None
        obj = _parse_json_object(decoded)
        if obj is None:
            raise BadInputError("message is base64 but not a JSON object")
    headers = obj.get("headers")
    if isinstance(headers, dict):
        return QueuedTask(urn=_check_urn(headers.get("id")), task=str(headers.get("task", "")))
    for key in ("urn", "executionRequestUrn"):
        if key in obj:
            return QueuedTask(urn=_check_urn(obj[key]), task="")
    raise BadInputError("message has neither envelope headers nor an execution-request urn")


def _parse_json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _check_urn(value: object) -> str:
    """The execution-request URN of a message, or ``BadInputError`` (the message is poison).

    Its id later names files (task log, outbox record, work dir), so beyond DataHub's own rules
    (at most ``URN_MAX_ENCODED_BYTES`` URL-encoded, no whitespace, no ``(),`` in a simple URN,
    no ``\u241f``) it may hold no ``/``, no ``..`` and no NUL or other control character.
    """
    if not isinstance(value, str) or not value.startswith(EXECUTION_REQUEST_PREFIX):
        raise BadInputError("message does not name an execution-request urn")
    rest = value[len(EXECUTION_REQUEST_PREFIX) :]
    if not rest:
        raise BadInputError("message names an execution-request urn with an empty id")
    # An ASCII character URL-encodes to 3 at most: only a long or non-ASCII URN may not fit.
    if not value.isascii() or 3 * len(value) > URN_MAX_ENCODED_BYTES:
        size = url_encoded_length(value)
        if size > URN_MAX_ENCODED_BYTES:
            raise BadInputError(f"execution-request urn of {size} bytes URL-encoded exceeds DataHub's "
                                f"{URN_MAX_ENCODED_BYTES}")
    problem = _id_problem(rest)
    if problem is not None:
        raise BadInputError(f"malformed execution-request urn: its id {problem}")
    return value


def _id_problem(request_id: str) -> str | None:
    if _PLAIN_ID.fullmatch(request_id):  # a UUID and the like: none of the checks below can fail
        return None
    if "/" in request_id or ".." in request_id:
        return "holds '/' or '..' (path-shaped)"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in request_id):
        return "holds NUL or another control character"
    if any(c.isspace() or c in "()," or c == URN_DELIMITER for c in request_id):
        return "holds whitespace or one of '(),\u241f'"
    return None


def url_encoded_length(text: str) -> int:
    """The length of ``text`` after Java's ``URLEncoder.encode`` (UTF-8), which DataHub measures."""
    return sum(1 if c in _URLENCODER_SAFE or c == " " else 3 * len(c.encode("utf-8", "surrogatepass"))
               for c in text)
