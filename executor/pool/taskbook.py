"""The pool's live Tasks, kept outside any actor so that a runner's crash loses none of them.

A Task belongs to its pool, not to the runner incarnation that started it: when the runner
crashes, its Tasks run on, and the next runner *adopts* them from this book (request, weight,
admission, whether it settled, how it ended) instead of stopping them, so a runner crash
interrupts nothing and reruns nothing. The Tasks write what they tell the runner here first
(``RunnerLink``, in ``executor.pool.runner_link``), so a notice told while no runner is up is
not lost with a dead mailbox; the runner reads capacity, admission and exits from the book.
Only the pool's own stop (or the executor's shutdown) stops the Tasks: ``TaskBook.stop_all``,
called by the pool supervisor when it stops the runner for good.

The poller starts the Tasks (``executor.pool.task_start``): it adds each entry here, within the
pool's room (``Room``) in the same hold of the lock, and reads the room left from the book
rather than from messages, so no restart of either side can leave the two counting apart. It
parks here when the pool is full; whoever pops the entry of an ended Task (its own
``RunnerLink``, or the runner for a crashed one) wakes it only then (``unpark_poller``).
"""

from __future__ import annotations

import enum
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pykka

from executor.pool.messages import TaskSettled, WeightKnown
from executor.supervision import ChildExited
from executor.supervision.spec import Lifeline


@dataclass
class TaskEntry:
    """One live Task: its request, its capacity, its phase as far as the runner cares."""

    urn: str
    name: str
    weight: float
    ref: pykka.ActorRef[Any] | None = None
    lifeline: Lifeline | None = field(default=None, repr=False)
    weighed: bool = False
    """The Task has read its request and knows its real weight."""
    admitted: bool = False
    """It may start its recipe (the weights fit): ``TaskBook.admit_waiting``, called by the
    runner or by the Task's own weighing (``RunnerLink``)."""
    settled: bool = False
    """It handed its outcome on (a result to the Reporter, or the message's fate)."""
    exited: ChildExited | None = None
    """How its actor ended; set by the Task itself, handled (and the entry dropped) by a runner."""


EPSILON = 1e-9
"""Slack for sums of float weights (ten Tasks of 0.1 fill the pool: their sum is 0.9999999999999999)."""


@dataclass(frozen=True)
class Room:
    """The pool's room, in default-weight slots: a weight of 1 plus ``prefetch`` slots (a
    prefetched Task waits for admission, which never lets the admitted weights pass 1).
    ``once``: one slot until a task has begun, then none, so the poller never receives a
    second message it would only have to give back."""

    default_weight: float
    prefetch: int
    once: bool = False

    @classmethod
    def of(cls, max_workers: int, prefetch: int, once: bool = False) -> Room:
        """The room of a pool of ``max_workers`` slots."""
        return cls(1.0 / max_workers, prefetch, once)

    def free(self, entries: list[TaskEntry], produced_result: bool) -> int:
        """Default-weight slots still free beside ``entries``."""
        if self.once and (entries or produced_result):
            return 0
        room = 1.0 + (0 if self.once else self.prefetch * self.default_weight)
        used = sum(entry.weight for entry in entries)
        free = max(0, math.floor((room - used + EPSILON) / self.default_weight))
        return min(free, 1) if self.once else free


class Added(enum.Enum):
    """What ``TaskBook.add_within`` did with a new entry."""

    ADDED = "added"
    """In the book: start its Task."""
    ADDED_UNWATCHED = "added, tell the runner"
    """In the book, and the runner polls no KILL signals now: start its Task and tell the runner."""
    KNOWN = "a Task runs this request already"
    NO_ROOM = "no room (or the pool drains)"


class TaskBook:
    """Live Tasks by request URN, in start order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, TaskEntry] = {}
        self._serial = 0
        self.produced_result = False
        """``--once``: some Task has reported a terminal result."""
        self.admitting = True
        """False once the pool drains (``close_admission``)."""
        self._poller_parked: Room | None = None
        """The room the poller found full, and waits in for the runner's word (``unpark_poller``)."""
        self._signals_watched = False
        """The runner has a KILL poll scheduled (``watch_signals``)."""
        self._empty_since = time.monotonic()
        """When the book last became empty (``pop``)."""
        self._trim_armed = False
        """A runner's look at the heap's trim is scheduled (``arm_trim``)."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, urn: object) -> bool:
        with self._lock:
            return urn in self._entries

    def __repr__(self) -> str:
        return f"TaskBook({len(self)} task(s))"

    def new_name(self) -> str:
        """A Task name unique in the pool across runner incarnations (its exit notice names it)."""
        with self._lock:
            self._serial += 1
            return f"task-{self._serial}"

    def add(self, entry: TaskEntry) -> None:
        """Record a Task about to start."""
        with self._lock:
            self._entries[entry.urn] = entry

    def add_within(self, entry: TaskEntry, room: Room) -> Added:
        """Record a Task about to start if its request has none and the pool has room and
        admits (it does not drain), all in one hold of the lock: a drain that closes admission
        after this finds the entry and gives it back; one before it, none is added."""
        with self._lock:
            if entry.urn in self._entries:
                return Added.KNOWN
            entries = list(self._entries.values())
            if not self.admitting or room.free(entries, self.produced_result) < 1:
                return Added.NO_ROOM
            self._entries[entry.urn] = entry
            watched, self._signals_watched = self._signals_watched, True
            return Added.ADDED if watched else Added.ADDED_UNWATCHED

    def poller_room(self, room: Room, park: bool = True) -> int:
        """Free slots for the poller to receive into; with none (and ``park``), the poller is
        marked as waiting, so the runner wakes it once a slot comes free (``unpark_poller``)."""
        with self._lock:
            free = room.free(list(self._entries.values()), self.produced_result)
            if free < 1 and park:
                self._poller_parked = room
            return free

    @property
    def poller_parked(self) -> bool:
        """Whether the poller waits for room in the book (``poller_room``), not yet woken."""
        with self._lock:
            return self._poller_parked is not None

    def unpark_poller(self) -> bool:
        """Whether the poller waits for room and now has some (then it no longer waits: the
        caller wakes it). A look that finds the pool as full as the poller found it (the
        runner's, after a prefetched Task weighed itself at the weight it was counted at) keeps
        it parked: waking it would cost two turns of its thread to find no room and park again."""
        with self._lock:
            room = self._poller_parked
            if room is None or room.free(list(self._entries.values()), self.produced_result) < 1:
                return False
            self._poller_parked = None
            return True

    def watch_signals(self) -> bool:
        """The runner's KILL poll stays scheduled while the book holds a Task: whether it does
        now. An entry added while it does not tells the runner to schedule it (``add_within``)."""
        with self._lock:
            self._signals_watched = bool(self._entries)
            return self._signals_watched

    def used(self) -> float:
        """The sum of the weights of every live Task (the busy-slots gauge)."""
        with self._lock:
            return sum(entry.weight for entry in self._entries.values())

    def pop(self, urn: str) -> TaskEntry | None:
        """Forget ``urn``'s Task (its exit has been handled); None if it was gone already (whoever
        pops an entry handles the end: its ``RunnerLink`` or a runner, never both)."""
        with self._lock:
            entry = self._entries.pop(urn, None)
            if entry is not None and not self._entries:
                self._empty_since = time.monotonic()
            return entry

    def arm_trim(self) -> bool:
        """Whether the caller must schedule the runner's look at the heap's trim: the book is
        empty and no look is scheduled (one is now). Tasks back to back each leave the book
        empty; one look at a time serves them all."""
        with self._lock:
            if self._entries or self._trim_armed:
                return False
            self._trim_armed = True
            return True

    def trim_armed(self) -> bool:
        """Whether a look is scheduled (a new runner schedules it again: its predecessor's
        timer died with it)."""
        with self._lock:
            return self._trim_armed

    def trim_wait(self, rest_s: float) -> float | None:
        """At a scheduled look: None if a Task is live (the look ends: the end of the last Task
        arms the next), else how long until the book has been empty ``rest_s`` (0: trim now,
        and the look ends; more: look again then)."""
        with self._lock:
            if self._entries:
                self._trim_armed = False
                return None
            left = rest_s - (time.monotonic() - self._empty_since)
            if left <= EPSILON:
                self._trim_armed = False
                return 0.0
            return left

    def entries(self) -> list[TaskEntry]:
        """A snapshot of every entry, oldest first."""
        with self._lock:
            return list(self._entries.values())

    def get(self, urn: str) -> TaskEntry | None:
        """The entry of ``urn``'s Task, if it is live."""
        with self._lock:
            return self._entries.get(urn)

    def named(self, name: str) -> TaskEntry | None:
        """The entry of the Task called ``name``."""
        with self._lock:
            return next((e for e in self._entries.values() if e.name == name), None)

    def live(self) -> int:
        """Tasks whose actor has not ended yet (what a drain waits for)."""
        with self._lock:
            return sum(1 for e in self._entries.values() if e.exited is None)

    def is_admitted(self, urn: str) -> bool:
        """Whether ``urn``'s Task has been admitted (by the runner or by its own weighing)."""
        with self._lock:
            entry = self._entries.get(urn)
            return entry is not None and entry.admitted

    def close_admission(self) -> None:
        """The pool drains: no Task is admitted any more, by any runner or Task."""
        with self._lock:
            self.admitting = False

    def admit_waiting(self, weighing: str | None = None) -> tuple[list[TaskEntry], TaskEntry | None, float]:
        """Admit weighed Tasks, oldest first, while the admitted weights stay within 1: the
        runner's admission, done in one hold of the lock, so the runner and a Task admitting
        itself (``RunnerLink``) never both count the same room. ``weighing``: the Task that
        calls, admitted even before the runner has recorded its ref (it starts that fast).

        Returns the newly admitted entries, the entry that waits for room (if one does: the
        ones behind it wait too, so it is not starved) and the weight then in use. A weighed
        entry without a ref (its Task weighed itself before the poller recorded it) stops the
        line without counting as waiting: the poller admits it once the ref is set
        (``task_start.admit_now``), and the runner when it hears its weight.
        """
        with self._lock:
            entries = list(self._entries.values()) if self.admitting else []
            used = sum(entry.weight for entry in entries if entry.admitted)
            admitted: list[TaskEntry] = []
            for entry in entries:
                if entry.admitted or entry.settled or not entry.weighed or entry.exited is not None:
                    continue  # an exited Task (weighed, then crashed while waiting) starts nothing
                if entry.ref is None and entry.urn != weighing:
                    return admitted, None, used  # not startable yet: admitted once its ref is set
                if used > EPSILON and used + entry.weight > 1.0 + EPSILON:
                    return admitted, entry, used
                entry.admitted = True
                used += entry.weight
                admitted.append(entry)
            return admitted, None, used

    def record(self, message: Any) -> None:
        """Write what a Task tells its runner into its entry (before the tell)."""
        with self._lock:
            if isinstance(message, WeightKnown) and message.urn in self._entries:
                self._entries[message.urn].weight = message.weight
                self._entries[message.urn].weighed = True
            elif isinstance(message, TaskSettled) and message.urn in self._entries:
                self._entries[message.urn].settled = True
                self.produced_result = self.produced_result or message.status is not None
            elif isinstance(message, ChildExited):
                entry = next((e for e in self._entries.values() if e.name == message.name), None)
                if entry is not None:
                    entry.exited = message

    def stop_all(self, timeout_s: float) -> list[str]:
        """Stop every live Task at once and wait for all within ``timeout_s`` (not one each);
        the URNs of those that did not stop in time."""
        deadline = time.monotonic() + timeout_s
        stopping = []
        for entry in self.entries():
            if entry.ref is None or entry.exited is not None:
                continue
            try:
                stopping.append((entry.urn, entry.ref.stop(block=False)))
            except pykka.ActorDeadError:
                continue
        late = []
        for urn, future in stopping:
            try:
                future.get(timeout=max(0.1, deadline - time.monotonic()))
            except pykka.Timeout:
                late.append(urn)
            except pykka.ActorDeadError:
                continue
        return late

