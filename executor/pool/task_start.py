"""Starting a Task for a received message, on the poller's own turn.

The poller starts each Task itself, straight after its receive: the room is checked and the
entry added in the pool's task book in one hold of its lock (``TaskBook.add_within``, the
runner's capacity rule), then the Task is started on a spare thread. Before, the poller told
the runner a ``RunRequest`` and the runner's turn (on the pool's strand) started the Task and
told the poller its ``Capacity`` back: two hand-overs between threads on every pickup's path.
The Task is the pool's all the same: its parent is the pool's current runner, whichever
incarnation (``RunnerLink``), its thread is linked to the pool supervisor's lifeline, and a
runner that starts later adopts it from the book. The runner hears of a start only when it
must schedule its KILL poll (``TaskStarted``); an orderly end gives its room back on the
Task's own thread (``RunnerLink``), with this module's ``publish_busy`` for the gauge.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from typing import TYPE_CHECKING

import pykka
from loguru import logger

from executor.datahub import aspects
from executor.pool.context import PoolContext
from executor.pool.messages import RUNNER, Admitted, Cancel, RunRequest, TaskStarted
from executor.pool.runner_link import RunnerLink
from executor.pool.task import Task
from executor.pool.taskbook import Added, Room, TaskBook, TaskEntry
from executor.supervision import ChildContext

if TYPE_CHECKING:
    from loguru import Logger

DRAIN_CANCEL = Cancel("the executor is shutting down", status=aspects.FAILURE, interrupted=True)
"""What a drain tells a Task not admitted yet: give the request back, for another executor."""


def pool_room(pool: PoolContext) -> Room:
    """The pool's room as its config and mode say."""
    return Room.of(pool.pool.max_workers, pool.pool.prefetch, pool.once)


_BUSY_LOCK = threading.Lock()
"""The poller and the runner both publish the gauge: the book is read and the gauge set in one
hold, so an older reading never overwrites a newer one."""


def publish_busy(pool: PoolContext, room: Room) -> None:
    """The busy-slots gauge, from the book (in default-weight slots)."""
    if pool.metrics is not None:
        with _BUSY_LOCK:
            pool.metrics.set_busy_slots(pool.pool_id, round(pool.tasks.used() / room.default_weight, 6))


@functools.lru_cache(maxsize=64)
def _runner_log(path: str, pool_id: str) -> Logger:
    """The runner's logger (its component and pool), made once per pool, not once per task."""
    return logger.bind(component=path, pool=pool_id)


def start_task(pool: PoolContext, ctx: ChildContext, request: RunRequest, room: Room) -> Added:
    """Start a Task for ``request`` if the pool has room and runs none for it yet (``ctx``: the
    caller's, a sibling of the runner). The Task is in the book before it runs, so whatever it
    records finds its entry, and a runner that starts meanwhile adopts it."""
    book = pool.tasks
    name = book.new_name()
    run_id = request.urn.rsplit(":", 1)[-1]
    runner_path = f"{ctx.path.rsplit('/', 1)[0]}/{RUNNER}"
    task_ctx = ChildContext(
        name=name,
        path=f"{runner_path}/task:{run_id}",
        incarnation=1,
        parent=RunnerLink(book, ctx.directory, functools.partial(publish_busy, pool, room),
                          _runner_log(runner_path, pool.pool_id)),
        directory=ctx.directory,
        listed=False,
        spare_thread=True,  # its own strand, on a thread kept between tasks
    )
    entry = TaskEntry(request.urn, name, room.default_weight, lifeline=task_ctx.lifeline)
    added = book.add_within(entry, room)
    if added not in (Added.ADDED, Added.ADDED_UNWATCHED):
        return added
    try:
        entry.ref = Task.start(task_ctx, pool, request)
    except Exception:
        book.pop(request.urn)
        if added is Added.ADDED_UNWATCHED:
            # ``add_within`` marked the KILL poll as scheduled: the runner re-reads it from the
            # book, so a later start is not left unwatched.
            ctx.directory.tell(RUNNER, TaskStarted(request.urn))
        raise
    if ctx.subtree is not None:
        ctx.subtree.link(task_ctx.lifeline)
    admit_now(book)
    if not book.admitting and not book.is_admitted(request.urn):
        # A drain closed admission after the entry went in and may have looked before its ref
        # was set: give the request back as the drain does (a second Cancel changes nothing).
        with contextlib.suppress(pykka.ActorDeadError):  # it ended already: nothing to give back
            entry.ref.tell(DRAIN_CANCEL)
    if added is Added.ADDED_UNWATCHED:
        ctx.directory.tell(RUNNER, TaskStarted(request.urn))
    if pool.metrics is not None and request.sent_timestamp_s is not None:
        pool.metrics.observe_pickup(pool.pool_id, max(0.0, time.time() - request.sent_timestamp_s))
    publish_busy(pool, room)
    return added


def admit_now(book: TaskBook) -> None:
    """Admit what fits now that the new Task's ref is set (``RunnerLink``'s rule): the Task may
    have weighed itself, found no room and told the runner, and the runner's turn (and the exit
    that made room) have run while its ref was unset, so ``admit_waiting`` stopped at it and
    nothing else would admit it in a quiet pool. Admits nothing during a drain."""
    for other in book.admit_waiting()[0]:
        if other.ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                other.ref.tell(Admitted())
