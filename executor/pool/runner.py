"""TaskRunner: slots and weights; looks after the Task actors the poller starts.

Capacity follows DataHub: ``max_workers`` slots of weight ``1/max_workers`` each, and a
request may weigh more (``EXECUTOR_TASK_WEIGHT``); running weights sum to at most 1. A
weight is known only after the Task has read its request, so a Task waits for ``Admitted``
before it starts the recipe, given oldest first while the admitted weights fit. It
polls GMS for KILL signals of its requests while it has any (no poll timer while the pool has
no task: idle CPU), looks at its safety nets on the same poll, and drives the drain at
shutdown; at rest it gets no message at all. A Task
that crashes is reported as FAILURE here; its teardown has already killed its processes.

The Tasks belong to the pool, not to this instance: they are kept in the pool's
``TaskBook`` and run on when the runner crashes. A new runner *adopts* them at start (their
weights count against capacity, a waiting one is admitted, an exit told while no runner was
up is handled), so a runner crash interrupts nothing. They are stopped only with the pool
(``stop_tasks``, the runner's ``ChildSpec.stop_shared``).

The poller starts each Task itself, within the room the book has (``executor.pool.task_start``):
no request goes through this strand on a pickup's path, nor an orderly end: a Task's own
``RunnerLink`` pops its entry, admits what fits and wakes a parked poller (``messages.Capacity``)
on the Task's thread. The runner handles a crashed Task's end (it reports the FAILURE), hears
of a start only when its KILL poll must be scheduled (``TaskStarted``) and of an end only when
the book is left empty with no trim look scheduled (``TrimSoon``). Mailbox: a restart drops
it; what the Tasks told is in the book, and a new runner wakes a parked poller and schedules
a pending trim look at its start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger

from executor.datahub import aspects
from executor.errors import ExecutorError
from executor.footprint import trim_heap
from executor.pool.base import PoolActor
from executor.pool.context import PoolContext
from executor.pool.messages import (
    POLLER,
    Admitted,
    Cancel,
    Capacity,
    Drain,
    Finish,
    InterruptAll,
    LiveTasks,
    PollSignals,
    StopReceiving,
    TaskStarted,
    TasksWanted,
    TrimSoon,
    WeightKnown,
)
from executor.pool.outcome import task_failure_aspect
from executor.pool.reporter import hand_over_result
from executor.pool.runner_link import log_wait
from executor.pool.task_start import DRAIN_CANCEL, pool_room, publish_busy
from executor.supervision import ChildContext, ChildExited

TRIM_AFTER_S = 2.0
"""How long the pool stays without tasks before the freed C heap is given back: not after every
task (tasks back to back would trim, then fault the same pages in again)."""


@dataclass(frozen=True)
class _TrimHeap:
    """Timer: trim if the pool has had no task for ``TRIM_AFTER_S`` (else look again then)."""


class TaskRunner(PoolActor):
    """Accepts requests within capacity and looks after the pool's Task actors."""

    def __init__(self, ctx: ChildContext, pool: PoolContext) -> None:
        super().__init__(ctx, pool)
        self.room = pool_room(pool)
        self.tasks = pool.tasks
        self.draining = False
        self._drain_deadline: float | None = None
        self._polling_signals = False
        """A ``PollSignals`` is scheduled: only while the book holds a task (``_poll_signals_soon``)."""
        self._trim_scheduled = False
        """This runner's ``_TrimHeap`` is scheduled: a Task's ``arm_trim`` just before ``setup``
        reads ``trim_armed`` also sends its ``TrimSoon`` here, and one look is enough."""

    def setup(self) -> None:
        if self.tasks.trim_armed():  # the predecessor's look died with its timers
            self._schedule_trim(TRIM_AFTER_S)
        self._adopt()
        self._poll_signals_soon()
        self._room_changed()  # a poller parked while no runner was up to wake it

    def release(self) -> None:
        if len(self.tasks):
            # Not stopped with us: the next runner adopts them, the pool's stop stops them.
            self.log.info("leaving {} task(s) to the pool", len(self.tasks))

    def handle(self, message: Any) -> Any:
        if isinstance(message, TaskStarted):
            self._poll_signals_soon()
        elif isinstance(message, WeightKnown):
            self.tasks.record(message)  # the Task wrote it already; a repeat changes nothing
            self._admit()
            self._room_changed()
        elif isinstance(message, ChildExited):
            self._task_exited(message)
        elif isinstance(message, TasksWanted):
            live = frozenset(entry.urn for entry in self.tasks.entries())
            self.ctx.directory.tell(POLLER, LiveTasks(message.round, live))
        elif isinstance(message, PollSignals):
            self._polling_signals = False
            self._poll_signals()
            self._safety_nets()
            self._poll_signals_soon()
        elif isinstance(message, Drain):
            self._drain(message)
        elif isinstance(message, InterruptAll):
            self._interrupt_all(message.reason)
        elif isinstance(message, TrimSoon):
            self._schedule_trim(TRIM_AFTER_S)  # the book marked the look scheduled
        elif isinstance(message, _TrimHeap):
            self._trim()
        return None

    def _trim(self) -> None:
        """At rest since the look was scheduled: give the runs' freed C heap back
        (executor.footprint). Tasks came and went since: look again once the pool has been empty
        ``TRIM_AFTER_S`` (``TaskBook.trim_wait``; timers are never early)."""
        self._trim_scheduled = False
        left = self.tasks.trim_wait(TRIM_AFTER_S)
        if left is None:
            return  # a Task is live: the end of the last of them schedules the next look
        if left <= 0:
            trim_heap()
        else:
            self._schedule_trim(left)

    def _schedule_trim(self, delay_s: float) -> None:
        """Look at the trim in ``delay_s``, unless this runner's look is scheduled already."""
        if not self._trim_scheduled:
            self._trim_scheduled = True
            self.tell_self_after(delay_s, _TrimHeap())

    def _trim_soon(self) -> None:
        """Trim once the pool has had no task for ``TRIM_AFTER_S``, with one look at a time (the
        book's ``arm_trim``): tasks back to back each ended with the pool empty and each set a
        timer (a timer-thread wake-up and a turn of this strand per task)."""
        if self.tasks.arm_trim():
            self._schedule_trim(TRIM_AFTER_S)

    def _safety_nets(self) -> None:
        """What no notice should be needed for, looked at on each KILL poll, so only while the
        book holds a task (the book is never empty while one waits for admission): a Task that
        ended without a notice, and an admission no notice brought. Nothing of it runs at rest.
        A lost ``TaskStarted`` (told while this runner was down) costs nothing more: the next
        runner's ``setup`` finds the book's tasks and starts the poll."""
        self._sweep()
        self._admit(log_waiting=False)

    def _adopt(self) -> None:
        """Take over the Tasks a crashed predecessor started: they hold capacity, one that
        waits for admission may start now, and an exit told while no runner was up is handled."""
        entries = self.tasks.entries()
        if not entries:
            return
        self.log.info(
            "adopting {} task(s) of the previous runner ({} ended meanwhile)",
            len(entries),
            sum(1 for entry in entries if entry.exited is not None),
        )
        for entry in entries:
            if entry.exited is not None:
                self._task_exited(entry.exited)
        self._sweep()
        self._admit()

    def _poll_signals_soon(self) -> None:
        """Schedule the next KILL poll if the book holds a task and none is scheduled: the first
        task starts the polling, and a poll that finds the book empty does not re-arm it."""
        if self._polling_signals or not self.tasks.watch_signals():
            return  # a Task the poller starts in an empty book tells ``TaskStarted``
        self._polling_signals = True
        self.tell_self_on_tick(self.pool.pool.signal_poll_interval_s, PollSignals())

    def _task_exited(self, message: ChildExited) -> None:
        entry = self.tasks.named(message.name)
        if entry is None:
            return  # handled already (at adoption, or a repeated notice)
        if message.failed and not entry.settled:
            self.log.bind(request=entry.urn.rsplit(":", 1)[-1]).error(
                "task actor crashed: {}", message.error
            )
            aspect = task_failure_aspect(f"The executor's task actor crashed: {message.error}")
            hand_over_result(self.pool, self.ctx, Finish(entry.urn, aspect, aspects.FAILURE))
        self.tasks.pop(entry.urn)  # after the report: a crash before it leaves it to the next runner
        self._admit()
        self._room_changed()
        self._trim_soon()

    def _sweep(self) -> None:
        """The safety net for a Task that ended without a notice (none should): once its
        thread has ended, it counts as crashed."""
        for entry in self.tasks.entries():
            ended = entry.lifeline is not None and entry.lifeline.ended()
            if entry.exited is None and entry.ref is not None and not entry.ref.is_alive() and ended:
                self._task_exited(ChildExited(entry.name, 1, True, "ended without notice"))

    def _admit(self, log_waiting: bool = True) -> None:
        """Let weighed Tasks start, oldest first, while the admitted weights stay within 1
        (``TaskBook.admit_waiting``; a Task whose weight fits at once admits itself there).

        A request is accepted at the default weight before its own is known; one that turns
        out heavier waits here (its message kept invisible) until the running ones leave room,
        and the ones behind it wait too, so it is not starved.
        """
        if self.draining:
            return  # what waits is given back (``_drain``); nothing new starts
        admitted, waiting, used = self.tasks.admit_waiting()
        for entry in admitted:
            assert entry.ref is not None  # ``admit_waiting`` skips the others for the runner
            try:
                entry.ref.tell(Admitted())
            except pykka.ActorDeadError:
                continue
        if waiting is not None and log_waiting:
            log_wait(self.log, waiting, used)

    def _poll_signals(self) -> None:
        urns = [entry.urn for entry in self.tasks.entries()]
        if not urns:
            return
        try:
            found = self.gms.batch_get_aspects(
                aspects.EXECUTION_REQUEST_ENTITY, urns, [aspects.SIGNAL_ASPECT]
            )
        except ExecutorError as exc:
            self.log.warning("could not read cancellation signals: {}", exc)
            return
        for urn, values in found.items():
            if aspects.signal_from_aspect(values.get(aspects.SIGNAL_ASPECT)) == "KILL":
                self._tell_task(urn, Cancel("cancelled by a KILL signal from DataHub"))

    def _interrupt_all(self, reason: str) -> None:
        """Interrupt every running Task at once; each one's kill does not block (h1)."""
        cancel = Cancel(reason, status=aspects.FAILURE, interrupted=True)
        for entry in self.tasks.entries():
            self._tell_task(entry.urn, cancel)

    def _tell_task(self, urn: str, message: Any) -> None:
        entry = self.tasks.get(urn)
        if entry is not None and entry.ref is not None:
            try:
                entry.ref.tell(message)
            except pykka.ActorDeadError:
                return

    def _drain(self, message: Drain) -> None:
        """Idempotent: the service repeats ``Drain`` in case a restart lost it."""
        if self._drain_deadline == message.deadline_monotonic:
            return
        self._drain_deadline = message.deadline_monotonic
        self.draining = True
        self.tasks.close_admission()  # a Task that weighs itself now waits, and is given back
        self.ctx.directory.tell(POLLER, StopReceiving())
        # No recipe starts during a drain: a request taken but not admitted yet (prefetched, or
        # still reading its input) goes back to the queue now, for another executor.
        for entry in self.tasks.entries():  # one added since gets the same (``task_start``)
            if not entry.admitted and not entry.settled:
                self._tell_task(entry.urn, DRAIN_CANCEL)
        delay = max(0.0, message.deadline_monotonic - time.monotonic())
        self.log.info("draining: {} task(s) running, {:.0f}s to finish", len(self.tasks), delay)
        self.tell_self_after(delay, InterruptAll("the executor is shutting down"))

    def _room_changed(self) -> None:
        """Room may have come free: wake the poller if it is parked in the book for lack of it
        (it reads how much from the book), and update the busy-slots gauge."""
        if self.tasks.unpark_poller() and not self.ctx.directory.tell(POLLER, Capacity()):
            self.log.debug("no poller to wake; a new one reads the room at its start")
        publish_busy(self.pool, self.room)


def stop_tasks(pool: PoolContext) -> None:
    """Stop every Task of the pool at once, within one grace (the pool stops: its runner's
    ``stop_shared``). Each one's teardown reports an interruption and gives its message back."""
    late = pool.tasks.stop_all(pool.pool.limits.kill_grace_s + 5)
    for urn in late:
        log = logger.bind(pool=pool.pool_id, request=urn.rsplit(":", 1)[-1])
        log.error("task actor did not stop in time")
