"""One thread that looks at every run whose limits are all far, once a second for them all.

A run's own thread paces its samples (``pacing``): down to 5 ms as a limit the monitor enforces
comes near, a look a second while every limit is far and the kernel watches the rest (the exit
through a pidfd, memory and processes through the run's cgroup). With several recipes that
sleep or wait on a database, that was a wake-up a second per run, each at its own moment, and
on a VM a thread that slept a second is charged a millisecond or more to wake
(docs/performance.md, "CPU while recipes run"); runs started together also woke together and
fought for the interpreter lock, five times the switches of a lone one. So once a run's look
found every limit far, its thread hands its looks over here and sleeps until its output, its
exit or a stop wakes it, or this thread does: one wake-up a second however many runs are far.

A look here samples the run and checks its limits (``FarRun.far_look``). When it finds a
breach, or a limit that could come near before the next look, the run is taken off the list and
its own thread is woken to sample, act and pace itself again. A run's thread takes itself off
the list whenever its sleep ends, under the run's own lock, so a run is never sampled by two
threads at once. A run's own thread still wakes by itself at its wall-time deadline (and
once a minute), so one look that hangs holds up no other run's deadline. The thread ends once
no run is far and starts again with the next one: an
executor at rest has none.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from loguru import logger

from executor.supervision.spare_threads import SPARES

LOOK_EVERY_S = 1.0
"""How often a far run is looked at: ``pacing.FAR_INTERVAL_S``, what its own thread did."""


class FarRun(Protocol):
    """What the sampler needs of a run (``monitor.Monitor``)."""

    look_lock: threading.Lock
    """Held while the run is looked at, by either thread."""

    def far_look(self) -> bool:
        """Sample the run; True when its own thread must look now (under ``look_lock``)."""
        ...

    def wake(self) -> None:
        """Cut the run's own sleep short."""
        ...


class FarLooks:
    """The runs handed over and the thread that looks at them (see the module doc)."""

    def __init__(self, every_s: float = LOOK_EVERY_S) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._runs: dict[int, FarRun] = {}
        self._looking = False
        """The thread runs (or is about to): ``add`` starts one only when none does."""
        self.rounds = 0
        """Rounds of looks so far (tests read it)."""

    def add(self, run: FarRun) -> None:
        """From the run's thread, under its ``look_lock``: look at it from now on."""
        with self._lock:
            self._runs[id(run)] = run
            if self._looking:
                return
            self._looking = True
        SPARES.start(self._loop, "sandbox-far-looks", "sandbox-far")

    def remove(self, run: FarRun) -> bool:
        """From the run's thread, under its ``look_lock``: no more looks; True if it was here."""
        with self._lock:
            return self._runs.pop(id(run), None) is not None

    def held(self) -> int:
        """How many runs are looked at here now."""
        with self._lock:
            return len(self._runs)

    def holds(self, run: FarRun) -> bool:
        """Whether ``run`` is looked at here (the caller holds its ``look_lock``)."""
        with self._lock:
            return id(run) in self._runs

    def _loop(self) -> None:
        while True:
            time.sleep(self.every_s)
            with self._lock:
                runs = list(self._runs.values())
                if not runs:
                    self._looking = False
                    return
            for run in runs:
                self._look(run)
            self.rounds += 1

    def _look(self, run: FarRun) -> None:
        """One run's look; a run whose own thread must act is handed back to it, woken."""
        with run.look_lock:
            if not self.holds(run):
                return  # its own thread took it back meanwhile
            try:
                wanted = run.far_look()
            except Exception:  # the run's own thread looks again and meets the error itself
                logger.exception("a far look failed; the run's own thread looks again")
                wanted = True
            if wanted:
                self.remove(run)
        if wanted:
            run.wake()


FAR_LOOKS = FarLooks()
"""The process's sampler of far runs."""
