"""Reconciliation: settle each held message from what the pool really holds, not from tells.

pykka drops a dead actor's mailbox, so an ``Acknowledge``, ``Release`` or ``RunRequest`` told
to a restarting sibling may be gone. The poller, which owns every message's fate, therefore
rebuilds that fate from scratch every round, whatever restarted:

1. it asks the runner which requests have a live Task (``TasksWanted`` -> ``LiveTasks``);
   a held message whose request has one is kept (extended);
2. a result waiting in the pool's outbox: the Reporter is asked to flush; it settles the
   message once GMS has the result (deliver, then delete);
3. otherwise GMS decides (``decide``): a terminal result there means it was delivered and
   only the settling tell was lost (delete); no request at all is poison; a fresh RUNNING
   means another executor runs it (release for one lease); anything else was lost on the
   way (release now, so the queue hands it out again).

Only messages held when the question was asked are judged: a RunRequest sent after it is not
covered by the answer.
"""

from __future__ import annotations

import enum
from typing import Any

from executor.datahub import aspects
from executor.pool import outcome


class Fate(enum.Enum):
    """What to do with a held message that has neither a live Task nor a pending result."""

    DELETE = "delete"
    RELEASE = "release"
    RELEASE_LATER = "release later"
    POISON = "poison"


def decide(values: dict[str, dict[str, Any]], live_window_s: float) -> tuple[Fate, str]:
    """The fate of a message whose request has no Task and no outbox entry here, from GMS's
    aspects of the request (``values``), with the reason to log."""
    if aspects.INPUT_ASPECT not in values:
        return Fate.POISON, "GMS knows no such execution request"
    result = values.get(aspects.RESULT_ASPECT)
    if not outcome.is_rerunnable(result):
        status = (result or {}).get("status")
        return Fate.DELETE, f"GMS already holds its {status} result"
    if outcome.running_elsewhere(result, live_window_s) is not None:
        return Fate.RELEASE_LATER, "it runs on another executor"
    return Fate.RELEASE, "no task runs it and no result waits for it"
