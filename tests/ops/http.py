"""A tiny HTTP GET for the ops tests: no proxy (the environment's must not catch loopback)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    """Status, headers and body of one response."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def get(url: str, method: str = "GET") -> Answer:
    """One request with a short timeout; HTTP errors are answers, not exceptions."""
    if not url.startswith("http://"):
        raise ValueError(f"only plain http on loopback here, got {url!r}")
    request = urllib.request.Request(url, method=method)  # noqa: S310 - scheme checked above
    try:
        with _OPENER.open(request, timeout=10) as resp:
            return Answer(resp.status, resp.headers.get("Content-Type", ""), resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Answer(err.code, err.headers.get("Content-Type", ""), err.read())
