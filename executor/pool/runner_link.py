"""A Task's parent: what it tells its runner, written to the pool's task book first.

A Task's notices outlive the runner incarnation they are meant for (``executor.pool.taskbook``):
each is recorded in the book, and only those the runner must act on wake it. Admission and an
orderly end's room are handled here, on the Task's own thread, with the runner's own rules (the
book's ``admit_waiting``), so a trivial task costs the runner no turn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka
from loguru import logger

from executor.pool.messages import POLLER, RUNNER, Admitted, Capacity, TaskSettled, TrimSoon, WeightKnown
from executor.pool.taskbook import TaskBook, TaskEntry
from executor.supervision import ChildExited, Directory

if TYPE_CHECKING:
    from loguru import Logger

WAITING_FOR_CAPACITY = "waiting for capacity: weight {:.2f}, {:.2f} in use"
"""Logged (INFO) for the Task that waits for room, by whoever found it waiting (tests wait for it)."""


def log_wait(log: Logger, waiting: TaskEntry, used: float) -> None:
    """The line an admission logs when ``waiting`` (the oldest Task left out) waits for room."""
    log.bind(request=waiting.urn.rsplit(":", 1)[-1]).info(WAITING_FOR_CAPACITY, waiting.weight, used)


class RunnerLink:
    """A Task's parent: the pool's current runner, whichever incarnation that is.

    Each notice is written to the book first, then told to the runner by name: a runner that
    is down (crashed, not yet restarted) finds it in the book when it adopts the Task. A
    ``TaskSettled`` is only written: the runner reads ``settled`` from the book, so telling it
    as well cost the runner's strand a wake-up and a turn per task that changed nothing.

    An orderly end (``ChildExited``, not failed) is handled here, on the Task's thread, as the
    runner would: the entry popped (room), what now fits admitted, a parked poller woken, the
    busy gauge set (``on_room``), and the runner told only when the book is left empty with no
    trim look scheduled (``TrimSoon``: about once per ``TRIM_AFTER_S`` for tasks back to back).
    A crashed Task's end goes to the runner, which reports its FAILURE before it pops the entry.
    Nothing is lost to a runner that is down: the book is the same either way.

    A ``WeightKnown`` admits here, on the Task's thread, what now fits (``admit_waiting``: the
    runner's rule, atomic in the book): the Task reads its admission from the book instead of
    waiting for the runner's ``Admitted`` (a hop to the pool's strand and one back per task),
    and any other Task admitted with it is told. The runner hears the weight only when it
    changes what the runner counted (capacity changes). A Task that must wait for room is
    logged here as the runner would log it: a prefetched Task waits so every time, and telling
    the runner cost the pool's strand a turn per task that only logged. Its admission needs no
    runner either: the end that frees the room admits it (``_ended``), and a runner's start or
    its safety net does the same from the book.
    """

    def __init__(self, book: TaskBook, directory: Directory,
                 on_room: Callable[[], None] | None = None, log: Logger = logger) -> None:
        self.book = book
        self.directory = directory
        self.on_room = on_room
        """Called once an ended Task's room is back (the pool's busy-slots gauge)."""
        self.log = log
        """The runner's logger (its pool and component): a wait is logged as the runner's."""

    def tell(self, message: Any) -> None:
        """Record ``message`` (``WeightKnown``, ``TaskSettled``, ``ChildExited``), then tell the
        runner the ones it acts on."""
        if isinstance(message, WeightKnown):
            self._weighed(message)
            return
        self.book.record(message)
        if isinstance(message, ChildExited) and not message.failed:
            self._ended(message)
        elif not isinstance(message, TaskSettled):
            self.directory.tell(RUNNER, message)

    def _ended(self, message: ChildExited) -> None:
        """An orderly end: give its room back as the runner's ``_task_exited`` would."""
        entry = self.book.named(message.name)
        if entry is None or self.book.pop(entry.urn) is None:
            return  # a runner's adoption handled it meanwhile
        self._tell_admitted(self.book.admit_waiting()[0], skip=None)
        if self.book.unpark_poller():
            self.directory.tell(POLLER, Capacity())
        if self.on_room is not None:
            self.on_room()
        if self.book.arm_trim():
            self.directory.tell(RUNNER, TrimSoon())

    @staticmethod
    def _tell_admitted(admitted: list[TaskEntry], skip: str | None) -> None:
        for other in admitted:
            if other.urn != skip and other.ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    other.ref.tell(Admitted())

    def _weighed(self, message: WeightKnown) -> None:
        entry = self.book.get(message.urn)
        counted = entry.weight if entry is not None else None
        self.book.record(message)
        admitted, waiting, used = self.book.admit_waiting(weighing=message.urn)
        self._tell_admitted(admitted, skip=message.urn)
        if counted != message.weight:
            self.directory.tell(RUNNER, message)  # the runner admits again and logs a wait
        elif waiting is not None and not any(e.urn == message.urn for e in admitted):
            log_wait(self.log, waiting, used)
