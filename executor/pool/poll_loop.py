"""The poller's loop of ``Poll`` tells: at most one pending, and a lost one replaced.

Each receive ends by telling the poller its next ``Poll`` (or a timer does, after a failure's
backoff); nothing else drives the loop, so a lost ``Poll`` would stop it for good ("any tell
can be lost"). The loop numbers its own ``Poll``: the safety net replaces one overdue by
``LOST_POLL_S`` with a newer one, and the older, should it still arrive, is ignored, so two
loops never run side by side.
"""

from __future__ import annotations

import time
from typing import Any

from executor.pool.messages import Poll
from executor.supervision.actor import SupervisedActor

LOST_POLL_S = 5.0
"""A ``Poll`` this overdue when the safety net looks was lost."""


class PollLoop:
    """The pending ``Poll`` of one poller: its number and when it is due."""

    def __init__(self, actor: SupervisedActor) -> None:
        self._actor = actor
        self._seq = 0
        self.due: float | None = None
        """When the pending ``Poll`` is due (monotonic; None: none is pending)."""

    def schedule(self, delay_s: float) -> None:
        """Tell the next ``Poll`` now or after ``delay_s``, unless one is pending."""
        if self.due is not None:
            return
        self._seq += 1
        self.due = time.monotonic() + max(0.0, delay_s)
        if delay_s <= 0:
            self._actor.actor_ref.tell(Poll(self._seq))
        else:
            self._actor.tell_self_after(delay_s, Poll(self._seq))

    def take(self, message: Poll) -> bool:
        """Whether to poll for ``message``: the pending one, or a nudge from outside (0)."""
        if message.seq not in (0, self._seq):
            return False  # stale: a newer Poll replaced it
        self.due = None
        return True

    def replace_lost(self, now: float, log: Any) -> None:
        """Forget a pending ``Poll`` overdue by ``LOST_POLL_S`` (the caller schedules anew)."""
        if self.due is not None and now > self.due + LOST_POLL_S:
            log.warning("the poll loop's next Poll is {:.0f}s overdue; polling again", now - self.due)
            self.due = None
