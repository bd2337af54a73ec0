"""The poller's pause before a receive that could fill only ``prefetch`` slots.

After a receive that handed messages over, the next one is made at once while a slot a task can
start in is free. When only prefetch slots are left, what it would bring cannot start before a
running task ends (that end frees a slot, and its ``Capacity`` ends the pause at once), while the
call (and the queue server's work for it) would compete for the two cores with the start of the
tasks just handed over: their input read, the spawn and the recipe's start-up
(``bench.pickup_timeline``). So it waits ``PREFETCH_PAUSE_S``; a long poll begun afterwards still
waits for the next message as before. A task's end ends the pause at once: its ``Capacity`` frees
a slot (a real one, or the prefetch one its waiting successor leaves), and the receive that
refills it is made then, as without the pause; only the receives right after a hand-over wait.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def holds(self, free_before: int, free_now: int) -> bool:
        """A ``Capacity`` moved the free slots from ``free_before`` to ``free_now``: whether the
        pause still holds the receive back. It ends (the receive is made now) once a slot a task
        can start in is free, or a slot was freed (a task ended): only a hand-over's own
        ``Capacity`` (fewer or as many free slots, prefetch ones only) leaves it on."""
        if self._current and self.only_prefetch_free(free_now) and free_now <= free_before:
            return True
        self._current = 0
        return False
