"""The messages a pool holds: received from SQS, not yet deleted or given back.

The book lives in the ``PoolContext``, outside any actor, for one reason: a QueuePoller that
crashes and is restarted must find the receipt handles of its predecessor and keep extending
them. Otherwise the message of a request that is still running here would reappear after its
visibility lapses, and another executor would run the same request at the same time. Only
the current poller writes to it; the lock makes a restart's hand-over safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class InFlight:
    """One held message: the request it carries and the latest handle to extend or settle it."""

    urn: str
    message_id: str
    receipt_handle: str
    receive_count: int = 1


class InFlightBook:
    """Held messages by request URN (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, InFlight] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        return f"InFlightBook({len(self)} message(s))"

    def get(self, urn: str) -> InFlight | None:
        """The held message of ``urn``, if any."""
        with self._lock:
            return self._items.get(urn)

    def put(self, item: InFlight) -> None:
        """Hold ``item`` (replacing an older entry of the same request)."""
        with self._lock:
            self._items[item.urn] = item

    def renew(self, urn: str, receipt_handle: str, receive_count: int) -> None:
        """Our own message came back (its lease had lapsed): keep its newest handle."""
        with self._lock:
            item = self._items.get(urn)
            if item is not None:
                self._items[urn] = replace(item, receipt_handle=receipt_handle, receive_count=receive_count)

    def pop(self, urn: str) -> InFlight | None:
        """Stop holding ``urn``'s message and return it."""
        with self._lock:
            return self._items.pop(urn, None)

    def items(self) -> list[InFlight]:
        """A snapshot of every held message."""
        with self._lock:
            return list(self._items.values())
