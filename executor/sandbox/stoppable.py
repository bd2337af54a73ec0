"""Running a helper command (a pip step of a venv build) that a stop or a deadline can end.

A venv build may take minutes, and a task can be cancelled or killed meanwhile: the build must
end then, not after pip has finished. ``run_lines`` starts the command in its own session,
hands each output line to ``on_line``, and a small watcher kills the whole process group
(pip's own children too) as soon as ``stop`` is set or ``timeout_s`` has passed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from executor.errors import BadInputError, ExecutorError

WATCH_TICK_S = 0.1


class Stopped(ExecutorError):
    """The work was stopped on request (a cancel or a kill of its task)."""


class StepTimedOut(BadInputError):
    """The command ran past its deadline and was killed."""


def check_not_stopped(stop: threading.Event | None, what: str) -> None:
    """Raise ``Stopped`` when ``stop`` is set, before starting ``what``."""
    if stop is not None and stop.is_set():
        raise Stopped(f"{what} was stopped: its task is stopping")


def run_lines(command: Sequence[str], env: Mapping[str, str], on_line: Callable[[str], None],
              stop: threading.Event | None, timeout_s: float, what: str) -> int:
    """Run ``command`` to its end and return its exit code; each output line goes to ``on_line``.

    Raises ``Stopped`` when ``stop`` was set meanwhile and ``StepTimedOut`` after ``timeout_s``;
    in both cases the command's process group was killed and reaped.
    """
    check_not_stopped(stop, what)
    with subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True) as proc:
        watcher = _Watcher(proc, stop, time.monotonic() + timeout_s)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                on_line(line.rstrip())
        except BaseException:
            watcher.kill("failed")  # never wait for a command whose output nobody reads
            raise
        finally:
            watcher.finish()
    if watcher.why == "stopped":
        raise Stopped(f"{what} was stopped: its task is stopping")
    if watcher.why == "timeout":
        raise StepTimedOut(f"{what} took longer than {timeout_s:.0f} s and was killed")
    return proc.returncode


class _Watcher:
    """Kills the command's process group on a stop or at the deadline."""

    def __init__(self, proc: subprocess.Popen[str], stop: threading.Event | None, deadline: float) -> None:
        self.why: str | None = None
        self._proc = proc
        self._stop = stop
        self._deadline = deadline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"step-watch-{proc.pid}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(WATCH_TICK_S):
            if self._stop is not None and self._stop.is_set():
                self.kill("stopped")
                return
            if time.monotonic() > self._deadline:
                self.kill("timeout")
                return

    def kill(self, why: str) -> None:
        """SIGKILL the whole group (the command has not been reaped yet, so its group id holds)."""
        self.why = self.why or why
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)

    def finish(self) -> None:
        """The output ended: stop watching (the caller reaps the command)."""
        self._done.set()
        self._thread.join()
