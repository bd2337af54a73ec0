"""Reconciliation: settle each held message from what the pool really holds, not from tells.

pykka drops a dead actor's mailbox, so an ``Acknowledge`` or ``Release`` told to a restarting
sibling may be gone, and a poller that crashes between holding a message and starting its Task
leaves a message without one. The poller, which owns every message's fate, therefore
rebuilds that fate from scratch every round, whatever restarted:

1. it asks the runner which requests have a live Task (``TasksWanted`` -> ``LiveTasks``);
   a held message whose request has one is kept (extended). The runner answers from the
   pool's task book (``executor.pool.taskbook``), which outlives the runner: a restarted
   runner has adopted the Tasks of its predecessor, so their messages stay held;
2. a result waiting in the pool's outbox: the Reporter is asked to flush; it settles the
   message once GMS has the result (deliver, then delete);
3. otherwise GMS decides (``decide``): a terminal result there means it was delivered and
   only the settling tell was lost (delete); no request at all is poison; a fresh RUNNING
   means another executor runs it (release for one lease); anything else was lost on the
   way (release now, so the queue hands it out again).

Only messages held when the question was asked are judged: a Task the poller starts after it is
not covered by the answer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from executor.datahub import aspects
from executor.datahub.gms import GmsClient
from executor.errors import ExecutorError
from executor.pool import outcome
from executor.pool.context import PoolContext
from executor.pool.messages import REPORTER, RUNNER, FlushOutbox, LiveTasks, TasksWanted
from executor.pool.reporter import has_pending_result
from executor.pool.task_timing import live_window_s
from executor.supervision import Directory


class Fate(enum.Enum):
    """What to do with a held message that has neither a live Task nor a pending result."""

    DELETE = "delete"
    RELEASE = "release"
    RELEASE_LATER = "release later"
    POISON = "poison"


def decide(values: dict[str, dict[str, Any]], window_s: float) -> tuple[Fate, str]:
    """The fate of a message whose request has no Task and no outbox entry here (or a Task
    about to run it: ``RELEASE`` then means "run it"), from GMS's aspects of the request
    (``values``), with the reason to log."""
    if aspects.INPUT_ASPECT not in values:
        return Fate.POISON, "GMS knows no such execution request"
    result = values.get(aspects.RESULT_ASPECT)
    if not outcome.is_rerunnable(result):
        status = (result or {}).get("status")
        return Fate.DELETE, f"GMS already holds its {status} result"
    age = outcome.running_elsewhere(result, window_s)
    if age is not None:
        return Fate.RELEASE_LATER, f"RUNNING elsewhere (reported {age:.0f}s ago)"
    return Fate.RELEASE, "no task runs it and no result waits for it"


class Reconciler:
    """The poller's rounds: ask the runner about what is held, then judge the answer.

    Runs in the poller's thread; it keeps only the current round, so an answer to an older
    round (or to a predecessor poller) is ignored and the next round asks again.
    """

    def __init__(self, pool: PoolContext, directory: Directory, log: Any) -> None:
        self.pool = pool
        self.directory = directory
        self.log = log
        self._round = 0
        self._asked: tuple[int, frozenset[str]] = (0, frozenset())

    def ask(self, held: frozenset[str]) -> None:
        """Ask the runner which of the requests held now have a live Task."""
        if not held:
            return
        self._round += 1
        if self.directory.tell(RUNNER, TasksWanted(self._round)):
            self._asked = (self._round, held)

    def judge(
        self, answer: LiveTasks, gms: GmsClient, still_held: Callable[[str], bool]
    ) -> list[tuple[str, Fate, str]]:
        """The fates of the messages that were held when asked, are still held, and have no
        live Task. A result waiting in the outbox is handed to the Reporter instead (it settles
        the message once GMS has it). Empty when GMS cannot be read: the next round retries."""
        round_, held = self._asked
        if answer.round != round_:
            return []
        orphans = [u for u in held if u not in answer.urns and still_held(u)]
        pending = [u for u in orphans if has_pending_result(self.pool, u)]
        if pending:
            self.log.info("{} held result(s) wait in the outbox; asking for delivery", len(pending))
            self.directory.tell(REPORTER, FlushOutbox())
        unknown = [u for u in orphans if u not in pending]
        if not unknown:
            return []
        wanted = [aspects.INPUT_ASPECT, aspects.RESULT_ASPECT]
        try:
            found = gms.batch_get_aspects(aspects.EXECUTION_REQUEST_ENTITY, unknown, wanted)
        except ExecutorError as exc:
            self.log.warning("reconciliation could not read GMS ({}); trying again next round", exc)
            return []
        window = live_window_s(self.pool)
        fates = []
        for urn in unknown:
            fate, reason = decide(found.get(urn, {}), window)
            self.log.warning("reconciliation: {} for {}: {}", fate.value, urn, reason)
            fates.append((urn, fate, reason))
        return fates
