"""When a botocore client's ``SendMessage`` leaves: the moment a pickup is timed from.

The executor's pickups are timed from just before the control plane's own ``SendMessage`` (its
dispatch writes the request to moto at once). A producer built on botocore (Celery's, through
kombu; the bare floor's boto3 client) first spends 1-2 ms of its own CPU (the task message,
kombu, the request's signing); a stamp taken before the producer's call counts that in the
worker's pickup. ``stamp_sends`` stamps each ``SendMessage`` where botocore hands it to its HTTP
session, so every side's pickup starts where its message leaves. Used in Celery's venv
(``celery_side``) as in the project's: botocore only, imported when called.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def is_send(request: Any) -> bool:
    """Whether a botocore request is an SQS ``SendMessage`` (JSON or query protocol)."""
    target = request.headers.get("X-Amz-Target") or b""
    target = target.decode() if isinstance(target, bytes) else str(target)
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    return target.endswith(".SendMessage") or b"Action=SendMessage" in body


def stamp_sends(into: list[float]) -> Callable[[], None]:
    """Append the wall clock of every ``SendMessage`` any botocore client of this process sends,
    just before it is written, to ``into``; returns the function that undoes it."""
    from botocore.httpsession import URLLib3Session

    send = URLLib3Session.send

    def stamped(self: Any, request: Any) -> Any:
        if is_send(request):
            into.append(time.time())
        return send(self, request)

    URLLib3Session.send = stamped  # type: ignore[method-assign]

    def undo() -> None:
        URLLib3Session.send = send  # type: ignore[method-assign]

    return undo
