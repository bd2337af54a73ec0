"""When a run's pipes start: at once, or, for a recipe spawned before its secrets resolved, once
its input was given.

The executor spawns a recipe while its secrets are still being fetched (``hold_input``): the
process joins its cgroup and starts its interpreter, then blocks reading its stdin. The gate
holds what makes that safe. The run's masker gets the secrets before the output reader exists
as a running thread, so not one byte of output is read unmasked; stdin is written only after
that; a stop that comes first decides for good (the input is never given, the output never
read); and a process that died before its input still has its output read, masked, once the
input comes (its own error line is what the report needs).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable, Sequence

from executor.sandbox.live_masking import LiveMasker
from executor.sandbox.masking import MIN_SECRET_LENGTH

INPUT_WAIT_S = 600.0
"""How long a held run that ended before its input came waits for the input or a stop (the
Task always sends one of them; this only bounds a lost one)."""
REFUSED = "a secret value appears in the command line; pass secrets on stdin"


def secret_in_argv(secrets: Sequence[str], argv: Sequence[str]) -> bool:
    """True when a secret long enough to be masked appears in a command-line argument.

    The arguments are searched joined by NUL, one search a secret: no argument holds a NUL
    (``SandboxSpec`` refuses one), so only a secret with a NUL in it could match across two, and
    such a secret is looked for in each argument instead."""
    joined = "\0".join(argv)
    return any(len(secret) >= MIN_SECRET_LENGTH and (
        secret in joined if "\0" not in secret else any(secret in arg for arg in argv)) for secret in secrets)


class InputGate:
    """Starts a run's pipe threads once both the process and its input exist, exactly once."""

    def __init__(self, held: bool, stdin: bytes, argv: Sequence[str], masker: LiveMasker,
                 mask_lock: threading.Lock) -> None:
        self.held = held
        self._argv = argv
        self._masker = masker
        self._mask_lock = mask_lock
        self._lock = threading.Lock()
        self._input: bytes | None = None if held else stdin
        self._decided = threading.Event()
        """Set once the input was given or the run was stopped."""
        self._starter: Callable[[bytes], None] | None = None
        self.started = False
        """True once the pipe threads run (whoever reads it True sees them started)."""
        self.refused: str | None = None
        """Why the input was refused (a secret in the command line); the run is stopped."""

    def give(self, stdin: bytes, secrets: Sequence[str]) -> bool:
        """The held input and its secrets; False when refused (the caller stops the run). The
        first decision counts: after a stop, or a second time, this does nothing."""
        if not self.held:
            raise RuntimeError("give_input is for a run spawned with hold_input")
        with self._lock:
            if self._decided.is_set():
                return True
            self._decided.set()
            if secret_in_argv(secrets, self._argv):
                self.refused = REFUSED
                return False
            with self._mask_lock:
                self._masker.add(secrets)  # before any byte of output can be read
            self._input = stdin
        self._start()
        return True

    @property
    def decided(self) -> bool:
        """True once the input was given or a stop came (a warm spare is adoptable only before)."""
        return self._decided.is_set()

    def stopped(self) -> None:
        """A stop came: an input not given yet never will be."""
        with self._lock:
            self._decided.set()

    def attach(self, starter: Callable[[bytes], None]) -> None:
        """The process runs; ``starter(stdin)`` starts its pipe threads (now, or once given)."""
        with self._lock:
            self._starter = starter
        self._start()

    def _start(self) -> None:
        with self._lock:  # started under it: whoever sees ``started`` sees them running
            if self.started or self._starter is None or self._input is None:
                return
            self.started = True
            self._starter(self._input)
            self._starter = None  # it refers back to the run: no cycle once it has done its job

    def detach(self) -> None:
        """The run is over: drop its starter (a reference back to the run) if it never ran."""
        with self._lock:
            self._starter = None

    def await_decision(self) -> bool:
        """At the run's end: wait (bounded) until the input came or a stop; True when the pipes
        ran, so the output is read (masked) and the streams are closed the usual way."""
        if not self.started and not self._decided.wait(INPUT_WAIT_S):
            self.stopped()  # lost: drop the output unread
        self._start()
        return self.started

    @staticmethod
    def drop_unread(proc: subprocess.Popen[bytes]) -> None:
        """Close the pipes of a process that never got its input (its output is never read)."""
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
