"""What the poller does with a message it will not run: malformed, oversized, or another task kind.

Such a message is logged once (its id, receive count and the reason, never its body) and
put back with a short, growing invisibility, so that the queue's redrive policy moves it to
the dead-letter queue after ``maxReceiveCount`` receives within seconds, without a hot
receive loop. A queue without a redrive policy would hand it out forever: after
``DELETE_AFTER_RECEIVES`` receives it is deleted (and that is logged as an error).

This module only decides (``PoisonPolicy.judge``); the poller, which owns the queue, logs and
makes the call the verdict names.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

DELETE_AFTER_RECEIVES = 25
"""Receives after which a poison message is deleted (no redrive policy caught it before)."""
DELAY_PER_RECEIVE_S = 1
"""Invisibility after the n-th receive: n seconds (capped by the pool's visibility)."""
REMEMBERED_IDS = 4096


@dataclass(frozen=True)
class PoisonVerdict:
    """What to do with one poison message."""

    log_it: bool
    """False when this message id was logged before (a redelivery)."""
    delete: bool
    visibility_s: int
    """When not deleted: hide it for this long (a growing delay until the redrive moves it)."""


class PoisonPolicy:
    """Counts poison messages and remembers which ids were logged already."""

    def __init__(self, max_visibility_s: int) -> None:
        self.max_visibility_s = max_visibility_s
        self.count = 0
        self._logged: OrderedDict[str, None] = OrderedDict()

    def judge(self, message_id: str, receive_count: int) -> PoisonVerdict:
        """The verdict for one receive of a poison message."""
        self.count += 1
        first = message_id not in self._logged
        self._logged[message_id] = None
        self._logged.move_to_end(message_id)
        while len(self._logged) > REMEMBERED_IDS:
            self._logged.popitem(last=False)
        delete = receive_count >= DELETE_AFTER_RECEIVES
        delay = min(self.max_visibility_s, max(1, receive_count) * DELAY_PER_RECEIVE_S)
        return PoisonVerdict(log_it=first or delete, delete=delete, visibility_s=delay)
