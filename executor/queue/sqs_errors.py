"""What an SQS error answer means for the executor: its AWS code, then the executor's error class.

SQS speaks AWS's JSON 1.0 protocol; an error is an HTTP status with a JSON body
``{"__type": "com.amazon.coral.service#<Exception>", "message": ...}`` and, since SQS left the
query protocol, an ``x-amzn-query-error: <query code>;<Sender|Receiver>`` header whose code wins
(botocore reads them the same way). A body that is not JSON (a proxy's HTML page, a query-protocol
XML ``ErrorResponse``) still gives its ``<Code>`` if it has one, else the status alone decides:

    ExpiredToken, InvalidClientTokenId, RequestExpired, ...   -> LeaseExpiredError (refresh)
    throttling, OverLimit, HTTP 429                           -> ThrottledError
    5xx, InternalError, ServiceUnavailable                    -> TransportError
    RequestTimeout(Exception), PriorRequestNotComplete        -> TransportError
    AccessDenied, other 403                                   -> NotAllowedError
    invalid receipt handle, unknown queue, other 4xx          -> BadInputError

The request-timeout codes are 4xx answers to a request that never arrived whole (or to one sent
while its predecessor was still being processed): nothing was wrong with it, so the call is
retried like a lost connection. botocore's error mapping here made them ``BadInputError`` (a
final error), but its standard retry mode had already retried them as transient.

A code is at most 200 of ``[A-Za-z0-9._:#-]`` (AWS's are short identifiers); any
other ``__type``, ``code``, ``<Code>`` or ``x-amzn-query-error`` is dropped (the status alone then
decides), as the code reaches the error's text, the pool's readiness reason and the logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from executor.errors import (
    BadInputError,
    LeaseExpiredError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)

_EXPIRED = frozenset({
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "RequestExpired",
    "UnrecognizedClientException",
})
_THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequestsException",
    "OverLimit", "AWS.SimpleQueueService.OverLimit", "KmsThrottled",
})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "KmsAccessDenied"})
_SERVER = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable"})
_TRANSIENT = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
_CODE = re.compile(r"[A-Za-z0-9._:#-]{1,200}")
_XML_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]{0,300})</Message>")


def parse_error(status: int, headers: Mapping[str, str], content: bytes) -> tuple[str, str]:
    """The AWS error code and message of an error answer (either may be empty)."""
    body: object = None
    try:
        body = json.loads(content) if content else None
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError included), or too deep
        body = None
    code, message = "", ""
    if isinstance(body, dict):
        raw = str(body.get("__type") or body.get("code") or "")
        code = _bounded(raw.split(":", 1)[0].rsplit("#", 1)[-1])  # botocore's: no namespace, no URL
        message = str(body.get("message") or body.get("Message") or "")
    elif (found := _XML_CODE.search(content)) is not None:
        code = _bounded(found.group(1).decode("utf-8", "replace").strip())
        text = _XML_MESSAGE.search(content)
        message = text.group(1).decode("utf-8", "replace") if text else ""
    query_code, _, fault = (headers.get("x-amzn-query-error") or "").partition(";")
    if _bounded(query_code) and fault:
        code = query_code
    return code, message


def _bounded(code: str) -> str:
    """``code`` if it looks like an AWS error code, else "" (see the module doc)."""
    return code if _CODE.fullmatch(code) else ""


def mapped_error(what: str, code: str, status: int, message: str = "") -> Exception:
    """The executor's error for SQS's answer ``code`` / HTTP ``status`` to the call ``what``."""
    text = f"SQS {what} failed: {code or 'HTTP ' + str(status)}: {message[:300]}"
    short = code.rsplit(".", 1)[-1]
    if code in _EXPIRED or short in _EXPIRED:
        return LeaseExpiredError(text)
    if code in _THROTTLED or short in _THROTTLED or status == 429:
        return ThrottledError(text)
    if code in _SERVER or code in _TRANSIENT or status >= 500:
        return TransportError(text)
    if code in _DENIED or short in _DENIED or status == 403:
        return NotAllowedError(text)
    return BadInputError(text)
