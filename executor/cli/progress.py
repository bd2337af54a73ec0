"""Progress lines for the command line's long waits: elapsed time and state, never silence.

A line is written when the state changes and, while it stays the same, every ``every_s``
seconds, so a wait of minutes shows it is alive without flooding a log. Lines are whole lines
(no carriage returns): they read the same on a terminal, in a CI log and through a pipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """``[label] 1:05 RUNNING (detail)`` lines for one wait; the clock is injectable for tests."""

    def __init__(
        self,
        out: TextIO,
        label: str,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._label = label
        self._every_s = every_s
        self._clock = clock
        self._started = clock()
        self._state: str | None = None
        self._last_line_at = self._started

    def elapsed(self) -> float:
        """Seconds since the wait began."""
        return self._clock() - self._started

    def update(self, state: str, detail: str = "") -> None:
        """Say ``state`` if it is new, or if the last line is ``every_s`` old."""
        now = self._clock()
        if state == self._state and now - self._last_line_at < self._every_s:
            return
        self._state = state
        self._last_line_at = now
        self.say(state, detail)

    def say(self, state: str, detail: str = "") -> None:
        """Write one line now, whatever the state."""
        suffix = f" ({detail})" if detail else ""
        self._out.write(f"[{self._label}] {format_elapsed(self.elapsed())} {state}{suffix}\n")
        self._out.flush()


def format_elapsed(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:03``: minutes and seconds, hours when there are any."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
