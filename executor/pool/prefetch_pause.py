"""The poller's pause before a receive that could fill only ``prefetch`` slots.

After a receive that handed messages over, the next one is made at once while a slot a task can
start in is free. When only prefetch slots are left, what it would bring cannot start before a
running task ends, while the call (and the queue server's work for it) would compete for the two
cores with the start of the tasks just handed over: their input read, the admission and the
spawn, about 10 ms (``bench.pickup_timeline``). So it waits ``PREFETCH_PAUSE_S``, and the
settles told meanwhile (``Acknowledge``, ``Release``: typically the previous task's, whose
result was delivered as this message came) wait with it: their messages stay held and extended
as before, and a poller restart loses them as it loses its mailbox (the reconciliation settles
them). A ``Capacity`` with a slot a task can start in ends the pause at once. The long poll made
afterwards waits for the next message as before, well before a task ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from executor.pool.messages import Acknowledge, Release

PREFETCH_PAUSE_S = 0.03


@dataclass(frozen=True)
class PrefetchPoll:
    """Timer: the paused receive is due (only the pause of this generation ends with it)."""

    generation: int


class PrefetchPause:
    """One pool's pause, kept by its poller (one actor: no lock)."""

    def __init__(self, prefetch: int) -> None:
        self.prefetch = prefetch
        self._current = 0
        """The generation of the pause holding the next receive back; 0 when none is."""
        self._made = 0
        self._settles: list[Acknowledge | Release] = []

    @property
    def active(self) -> bool:
        return self._current != 0

    def only_prefetch_free(self, free_slots: int) -> bool:
        """Whether ``free_slots`` are prefetch slots only: a task received now would wait."""
        return self.prefetch > 0 and free_slots <= self.prefetch

    def begin(self) -> PrefetchPoll | None:
        """A new pause; the timer message to send after ``PREFETCH_PAUSE_S`` (None: one holds)."""
        if self._current:
            return None
        self._made += 1
        self._current = self._made
        return PrefetchPoll(self._current)

    def ends_with(self, timer: PrefetchPoll) -> bool:
        """Whether ``timer`` ends the pause under way (an older pause's timer does not)."""
        if timer.generation != self._current:
            return False
        self._current = 0
        return True

    def holds(self, free_now: int) -> bool:
        """After a ``Capacity`` (``free_now`` slots free): whether the pause still holds; it ends
        once a slot a task can start in is free."""
        if self._current and self.only_prefetch_free(free_now):
            return True
        self._current = 0
        return False

    def defer(self, settle: Acknowledge | Release) -> bool:
        """Keep ``settle`` until the pause ends (True), or False: none holds, settle it now."""
        if not self._current:
            return False
        self._settles.append(settle)
        return True

    def take_settles(self) -> list[Acknowledge | Release]:
        """The settles the pause kept, in their order, to be made now (the pause is over)."""
        settles, self._settles = self._settles, []
        return settles
