"""TaskRunner: slots and weights; starts one temporary Task actor per request it accepts.

Capacity follows DataHub: ``max_workers`` slots of weight ``1/max_workers`` each, and a
request may weigh more (``EXECUTOR_TASK_WEIGHT``); running weights sum to at most 1. A
weight is known only after the Task has read its request, so a Task waits for ``Admitted``
before it starts the recipe, given oldest first while the admitted weights fit. It
polls GMS for KILL signals of running requests, and drives the drain at shutdown. A Task
that crashes is reported as FAILURE here; its teardown has already killed its processes.

Capacity (``messages.Capacity``) is published with this instance's epoch and the count of
RunRequests accepted from the current poller epoch, so either side's restart re-synchronises
it. Mailbox: a restart drops it, and this instance's Tasks are stopped with it (their
teardown reports or releases); a RunRequest lost that way is found by the poller's
reconciliation, which asks ``TasksWanted`` here.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pykka

from executor.datahub import aspects
from executor.errors import ExecutorError
from executor.footprint import trim_heap
from executor.pool.base import PoolActor
from executor.pool.context import PoolContext
from executor.pool.messages import (
    POLLER,
    REPORTER,
    Admitted,
    Cancel,
    Capacity,
    CapacityWanted,
    Drain,
    Finish,
    InterruptAll,
    LiveTasks,
    PollSignals,
    Release,
    RunningCount,
    RunRequest,
    StopReceiving,
    TaskSettled,
    TasksWanted,
    WeightKnown,
)
from executor.pool.outcome import task_failure_aspect
from executor.pool.reporter import persist_result
from executor.pool.task import Task
from executor.supervision import ChildContext, ChildExited

EPSILON = 1e-9


@dataclass
class _Running:
    name: str
    ref: pykka.ActorRef[Any]
    weight: float
    settled: bool = False
    weighed: bool = False
    admitted: bool = False


class TaskRunner(PoolActor):
    """Accepts requests within capacity and supervises their Task actors."""

    def __init__(self, ctx: ChildContext, pool: PoolContext) -> None:
        super().__init__(ctx, pool)
        self.default_weight = 1.0 / pool.pool.max_workers
        self.running: dict[str, _Running] = {}
        self.draining = False
        self._drain_deadline: float | None = None
        self.epoch = uuid.uuid4().hex[:12]
        self.poller_epoch: str | None = None
        self.accepted = 0
        """RunRequests stamped with this epoch by ``poller_epoch``."""
        self._task_serial = 0
        self.produced_result = False

    def setup(self) -> None:
        self.tell_self_after(self.pool.pool.signal_poll_interval_s, PollSignals())
        self._publish_capacity()

    def release(self) -> None:
        """Stop every Task at once, then wait for all within one grace (not one each)."""
        deadline = time.monotonic() + self.pool.pool.limits.kill_grace_s + 5
        stopping = []
        for urn, item in list(self.running.items()):
            try:
                stopping.append((urn, item.ref.stop(block=False)))
            except pykka.ActorDeadError:
                continue
        for urn, future in stopping:
            try:
                future.get(timeout=max(0.1, deadline - time.monotonic()))
            except (pykka.Timeout, pykka.ActorDeadError):
                self.log.bind(request=urn).error("task actor did not stop in time")

    def handle(self, message: Any) -> Any:
        if isinstance(message, RunRequest):
            self._run(message)
        elif isinstance(message, WeightKnown):
            if message.urn in self.running:
                self.running[message.urn].weight = message.weight
                self.running[message.urn].weighed = True
                self._admit()
                self._publish_capacity()
        elif isinstance(message, TaskSettled):
            if message.urn in self.running:
                self.running[message.urn].settled = True
            self.produced_result = self.produced_result or message.status is not None
        elif isinstance(message, ChildExited):
            self._task_exited(message)
        elif isinstance(message, CapacityWanted):
            if message.poller_epoch != self.poller_epoch:
                self.poller_epoch, self.accepted = message.poller_epoch, 0
            self._publish_capacity()
        elif isinstance(message, TasksWanted):
            self.ctx.directory.tell(POLLER, LiveTasks(message.round, frozenset(self.running)))
        elif isinstance(message, PollSignals):
            self._poll_signals()
            self.tell_self_after(self.pool.pool.signal_poll_interval_s, PollSignals())
        elif isinstance(message, Drain):
            self._drain(message)
        elif isinstance(message, InterruptAll):
            self._interrupt_all(message.reason)
        elif isinstance(message, RunningCount):
            return len(self.running)
        return None

    def free_slots(self) -> int:
        """Default-weight slots still free (``--once``: one until a task has begun, then none,
        so that the poller never receives a second message it would only have to give back)."""
        if self.pool.once and (self.running or self.produced_result):
            return 0
        used = sum(item.weight for item in self.running.values())
        free = max(0, math.floor((1.0 - used + EPSILON) / self.default_weight))
        return min(free, 1) if self.pool.once else free

    def _run(self, request: RunRequest) -> None:
        if request.poller_epoch != self.poller_epoch:
            self.poller_epoch, self.accepted = request.poller_epoch, 0
        if request.runner_epoch == self.epoch:
            self.accepted += 1  # one the poller counts against this epoch's capacity
        log = self.log.bind(request=request.urn.rsplit(":", 1)[-1])
        if request.urn in self.running:
            self._publish_capacity()  # nothing to start; the poller counted a slot for it
            return
        if self.draining or self.free_slots() < 1:
            log.info("no capacity (or draining): giving the message back")
            self.ctx.directory.tell(POLLER, Release(request.urn))
            self._publish_capacity()
            return
        self._task_serial += 1
        ctx = ChildContext(
            name=f"task-{self._task_serial}",
            path=f"{self.ctx.path}/task:{request.urn.rsplit(':', 1)[-1]}",
            incarnation=1,
            parent=self.actor_ref,
            directory=self.ctx.directory,
            listed=False,
        )
        ref = Task.start(ctx, self.pool, request)
        self.running[request.urn] = _Running(ctx.name, ref, self.default_weight)
        if self.pool.metrics is not None and request.sent_timestamp_s is not None:
            self.pool.metrics.observe_pickup(
                self.pool.pool_id, max(0.0, time.time() - request.sent_timestamp_s)
            )
        self._publish_capacity()

    def _task_exited(self, message: ChildExited) -> None:
        urn = next((u for u, r in self.running.items() if r.name == message.name), None)
        if urn is None:
            return
        item = self.running.pop(urn)
        if message.failed and not item.settled:
            self.log.bind(request=urn.rsplit(":", 1)[-1]).error("task actor crashed: {}", message.error)
            aspect = task_failure_aspect(f"The executor's task actor crashed: {message.error}")
            finish = Finish(urn, aspect, aspects.FAILURE)
            persist_result(self.pool, finish)
            self.ctx.directory.tell(REPORTER, finish)
        self._admit()
        self._publish_capacity()
        if not self.running:
            trim_heap()  # at rest again: give the run's freed C heap back (executor.footprint)

    def _admit(self) -> None:
        """Let weighed Tasks start, oldest first, while the admitted weights stay within 1.

        A request is accepted at the default weight before its own is known; one that turns
        out heavier waits here (its message kept invisible) until the running ones leave room,
        and the ones behind it wait too, so it is not starved.
        """
        used = sum(item.weight for item in self.running.values() if item.admitted)
        for urn, item in self.running.items():
            if item.admitted or item.settled or not item.weighed:
                continue
            if used > EPSILON and used + item.weight > 1.0 + EPSILON:
                self.log.bind(request=urn.rsplit(":", 1)[-1]).info(
                    "waiting for capacity: weight {:.2f}, {:.2f} in use", item.weight, used
                )
                return
            item.admitted = True
            used += item.weight
            try:
                item.ref.tell(Admitted())
            except pykka.ActorDeadError:
                continue

    def _poll_signals(self) -> None:
        if not self.running:
            return
        urns = list(self.running)
        try:
            found = self.gms.batch_get_aspects(
                aspects.EXECUTION_REQUEST_ENTITY, urns, [aspects.SIGNAL_ASPECT]
            )
        except ExecutorError as exc:
            self.log.warning("could not read cancellation signals: {}", exc)
            return
        for urn, values in found.items():
            signal = aspects.signal_from_aspect(values.get(aspects.SIGNAL_ASPECT))
            if signal == "KILL" and urn in self.running:
                self.running[urn].ref.tell(Cancel("cancelled by a KILL signal from DataHub"))

    def _interrupt_all(self, reason: str) -> None:
        """Interrupt every running Task at once; each one's kill does not block (h1)."""
        cancel = Cancel(reason, status=aspects.FAILURE, interrupted=True)
        for item in self.running.values():
            try:
                item.ref.tell(cancel)
            except pykka.ActorDeadError:
                continue

    def _drain(self, message: Drain) -> None:
        """Idempotent: the service repeats ``Drain`` in case a restart lost it."""
        if self._drain_deadline == message.deadline_monotonic:
            return
        self._drain_deadline = message.deadline_monotonic
        self.draining = True
        self.ctx.directory.tell(POLLER, StopReceiving())
        delay = max(0.0, message.deadline_monotonic - time.monotonic())
        self.log.info("draining: {} task(s) running, {:.0f}s to finish", len(self.running), delay)
        self.tell_self_after(delay, InterruptAll("the executor is shutting down"))

    def _publish_capacity(self) -> None:
        free = 0 if self.draining else self.free_slots()
        capacity = Capacity(free, self.epoch, self.poller_epoch, self.accepted, self.draining)
        self.ctx.directory.tell(POLLER, capacity)
        if self.pool.metrics is not None:
            used = sum(item.weight for item in self.running.values())
            self.pool.metrics.set_busy_slots(self.pool.pool_id, round(used / self.default_weight, 6))
