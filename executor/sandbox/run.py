"""One sandboxed run: ``SandboxSpec`` (``sandbox.spec``) says what to run, ``SandboxRun`` runs
and watches it. A spec with ``hold_input`` is spawned before its input exists (the recipe waits
for its stdin while its secrets resolve; ``sandbox.held_input`` starts the pipes once given).

A run owns one thread (the supervisor, a spare thread: ``supervision.spare_threads``), which
also reads the output (``waiter``: the pipe is polled with the exit and the stop), plus a stdin
writer thread only for an input larger than the pipe. The process is forked by the executor's
spawn server (``sandbox.spawner``; the parent-death signal then follows the server's keeper
thread), asked by the supervisor or, with ``start(here=True)``, by the caller's thread; without
a server the supervisor spawns it through the exec wrapper (``launch.py``), so the parent-death
signal is tied to a thread that lives exactly as long as the process. The supervisor then watches the tree
(``monitor``: samples paced by the nearest limit, woken at once by the main process's exit or a
``stop``), enforces the limits, and at the end collects the report file and builds the
``SandboxResult``, hands it to ``wait_result`` at once, then removes the work dir and the cgroup
and only then hands it to ``when_known``'s callback, ``wait`` and ``on_exit``: a caller that
waits may report the result before the clean-up; the callback (a Task's hand-over) comes after
it, so the woken Task's turn (its outbox write) does not share the interpreter lock with the
clean-up's syscalls, each a wake-up of both threads. Only a few syscalls come before it: a work
dir that needs ``rmtree``'s walk, or lists more than ``workdir.SHALLOW_MAX_ENTRIES`` entries, is
removed after the callback (a deep or wide tree does not hold the result back); whoever frees the
run's slot waits for the clean-up too. The Task actor drives a run through these few methods.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from loguru import logger

from executor.sandbox.cgroups import CgroupSupport
from executor.sandbox.held_input import InputGate
from executor.sandbox.live_masking import LiveMasker
from executor.sandbox.log_retention import prune_run_logs
from executor.sandbox.monitor import Monitor, StopRequest
from executor.sandbox.output import TAIL_LINES
from executor.sandbox.process_start import command, start_process
from executor.sandbox.result import SandboxResult
from executor.sandbox.run_log import RunLog
from executor.sandbox.run_place import RunPlace
from executor.sandbox.spawner import SpawnServer, SpawnUnavailable
from executor.sandbox.spec import SandboxSpec
from executor.sandbox.streams import OutputReader, StdinWriter
from executor.supervision.spare_threads import SPARES, Job


class SandboxRun:
    """One running process tree. ``on_line`` and ``on_exit`` are called from the run's threads."""

    def __init__(self, spec: SandboxSpec, on_line: Callable[[str], None] | None = None,
                 on_exit: Callable[[SandboxResult], None] | None = None,
                 cgroups: CgroupSupport | None = None, spawner: SpawnServer | None = None) -> None:
        self.spec = spec
        self._on_exit = on_exit
        self._cgroups = cgroups
        self._spawner = spawner
        """Forks the recipe when given (``sandbox.spawner``); else the exec wrapper starts it."""
        self._spawned_by_server = False
        self._masker = LiveMasker(spec.secrets, spec.live_secrets)
        self._log = RunLog(on_line)
        self._started = threading.Event()
        self._known = threading.Event()
        """The result is known (set before the clean-up, ``_done`` after it)."""
        self._done = threading.Event()
        self._result: SandboxResult | None = None
        self._when_known: Callable[[SandboxResult], None] | None = None
        self._place = RunPlace()
        """Its work dir and cgroup (``run_place``)."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._monitor: Monitor | None = None
        self._pending_stop: StopRequest | None = None
        self._began: float | None = None
        self._stage = _Stage()
        """What ``start(here=True)`` did on the caller's thread, for the supervisor to go on from."""
        self._lock = threading.Lock()
        self._mask_lock = threading.Lock()
        self._gate = InputGate(spec.hold_input, spec.stdin, spec.argv, self._masker, self._mask_lock)
        self._thread: Job | None = None
        """The supervisor's work, on a spare thread (``spare_threads``) once started."""

    @property
    def pid(self) -> int | None:
        """The root process id once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def work_dir(self) -> Path | None:
        """The private work dir once started (gone after the run)."""
        return self._place.work_dir

    @property
    def output_bytes(self) -> int:
        """Bytes the run has written so far."""
        return self._monitor.reader.bytes_read if self._monitor is not None else 0

    def start(self, timeout_s: float = 30.0, here: bool = False) -> None:
        """Spawn the process; returns once it runs (or failed to: then the result says why).

        ``here``: prepare and spawn on the calling thread when the spawn server takes it (no
        thread hop before the fork), then return without waiting; whatever it cannot do here (a
        stop came first, an error, no server: the exec wrapper must be started from the
        supervisor thread, whose life its parent-death signal follows) the supervisor does.
        """
        if self._thread is not None or self._done.is_set() or self._began is not None:
            raise RuntimeError("a SandboxRun starts once")
        self._began = time.monotonic()
        if here and self._spawner is not None:
            self._spawn_here()
        try:
            self._thread = SPARES.start(self._main, f"sandbox-{self.spec.task_id}", "sandbox")
        except BaseException:  # no supervisor: nothing it would watch may be left
            self._kill_spawned()
            self._clean_up()
            raise
        if not here:
            self._started.wait(timeout_s)

    def stop(self, reason: str, grace_s: float | None = None, status: str = "CANCELLED") -> None:
        """SIGTERM the tree, SIGKILL after ``grace_s`` (default: the limits' grace); non-blocking.

        The result's outcome becomes ``stopped`` with ``stop_reason`` and ``stop_status``
        unless a limit was hit first. A stop that comes before the spawn means the process is
        never spawned. A later stop never weakens an earlier one: the first reason and status
        stay, and a shorter grace (``0``: SIGKILL now) takes effect whether or not the first
        stop was already acted on.
        """
        with self._lock:
            earlier = self._pending_stop
            asked = StopRequest(reason, grace_s, status)
            self._pending_stop = asked if earlier is None else earlier.then(grace_s)
            monitor = self._monitor
        self._gate.stopped()  # a ``give_input`` after this one gives nothing
        if monitor is not None:
            monitor.wake()

    def give_input(self, stdin: bytes, secrets: Sequence[str]) -> None:
        """A held run's stdin and the secrets it carries (``hold_input``); the first call counts.

        The masker holds ``secrets`` before a single byte of output is read; a run already
        stopped never gets its input; a secret that appears in the command line is refused (the
        tree is killed, the run ends with that error, the recipe never saw a secret).
        """
        if not self._gate.give(stdin, secrets):
            self.stop(self._gate.refused or "input refused", grace_s=0, status="FAILURE")

    def adopt(self, spec: SandboxSpec) -> bool:
        """A warm spare (``executor.pool.warm``) becomes the run of ``spec``, a task's spec equal
        to the spare's but for its id, log file and secrets: the task's log file opens, its
        secrets join the masker, its wall time and duration count from now. False, changing
        nothing, when the spare cannot be adopted: not spawned, its process gone or ending, a
        stop or an input came. Raises (the log file could not be open) before anything changed
        but perhaps that file: the caller then discards the spare."""
        with self._lock:
            monitor, proc = self._monitor, self._proc
            if (monitor is None or proc is None or self._pending_stop is not None or monitor.ending
                    or self._gate.decided or self._known.is_set() or proc.poll() is not None):
                return False
            if spec.log_file is not None:  # first: what may fail (ENOSPC, EMFILE) changes nothing else
                self._log.open_file(spec.log_file, spec.log_max_bytes)
            monitor.restart_clock()
            self._began = time.monotonic()
            with self._mask_lock:
                self._masker.add(spec.secrets)
            where = self._place.work_dir.name if self._place.work_dir is not None else "none"
            self.note(f"runs in a warm spare spawned ahead of the task (work dir {where})")
            self.spec = spec
        prune_run_logs(spec)
        return True

    def wait(self, timeout: float | None = None) -> SandboxResult | None:
        """The result once the tree is gone and cleaned up; None on timeout."""
        self._done.wait(timeout)
        return self._result if self._done.is_set() else None

    def wait_result(self, timeout: float | None = None) -> SandboxResult | None:
        """The result as soon as it is known: the tree is gone and the report read, while the
        work dir and the cgroup may still be being removed (``wait`` waits for that too)."""
        self._known.wait(timeout)
        return self._result

    def when_known(self, callback: Callable[[SandboxResult], None]) -> None:
        """``callback(result)`` once the run is over, on the supervisor thread right after the
        clean-up (the module doc: one thread busy at a time), or now when the result is known
        already: whoever only hands the result on needs no thread of its own to wait for it.
        One callback."""
        with self._lock:
            if not self._known.is_set():
                if self._when_known is not None:  # a second would silently drop the first
                    raise RuntimeError("a sandbox run takes one when_known callback")
                self._when_known = callback
                return
        assert self._result is not None
        callback(self._result)

    def log_tail(self, max_lines: int = TAIL_LINES) -> str:
        """The last ``max_lines`` masked lines, for RUNNING progress reports."""
        return self._log.tail(max_lines)

    def take_stop_request(self) -> StopRequest | None:
        """For the monitor: the pending stop request, once."""
        with self._lock:
            request, self._pending_stop = self._pending_stop, None
            return request

    def emit(self, line: str) -> None:
        """A masked line into the run's log (memory, task log file, ``on_line``); never raises:
        a log that fails must not stop the run's end (``_finish``) or a SIGKILL."""
        try:
            self._log.emit(line)
        except Exception:
            logger.exception("sandbox {}: a line of its log was lost", self.spec.task_id)

    def note(self, text: str) -> None:
        """A line from the sandbox itself (masked like the rest); never raises (``emit``)."""
        try:
            with self._mask_lock:  # never while ``give_input`` adds the run's secrets
                line = self._masker.mask(f"[sandbox] {text}")
        except Exception:
            logger.exception("sandbox {}: a note of its own was lost", self.spec.task_id)
            return
        self.emit(line)

    # -- the supervisor thread ----------------------------------------------------------------
    def _spawn_here(self) -> None:
        """``start(here=True)``: the set-up and the spawn server's fork on the caller's thread.
        An error is kept for the supervisor to report; a stop or a spawn the server cannot take
        leaves the rest to it (nothing was started)."""
        try:
            self._prepare()
            self._stage.prepared = True
            with self._lock:
                if self._pending_stop is not None:
                    return
            self._spawn(server_only=True)
            self._stage.spawned = True
            self._started.set()
        except SpawnUnavailable as exc:
            logger.debug("spawn of {} left to its supervisor: {}", self.spec.task_id, exc)
        except Exception as exc:  # reported by the supervisor, as one raised there
            self._stage.error = exc

    def _main(self) -> None:
        start = self._began if self._began is not None else time.monotonic()
        try:
            if self._stage.error is not None:
                raise self._stage.error
            if not self._stage.prepared:
                self._prepare()
            if not self._stage.spawned:
                if self._stopped_before_spawn(start):
                    return
                self._spawn()
        except Exception as exc:
            logger.warning("sandbox for {} could not start: {}", self.spec.task_id, exc)
            self._started.set()
            self._finish(start, error=f"{type(exc).__name__}: {exc}")
            return
        self._started.set()
        prune_run_logs(self.spec)
        assert self._monitor is not None
        error = None
        try:
            self._monitor.run()
        except Exception as exc:
            logger.exception("sandbox monitor for {} failed; killing the tree", self.spec.task_id)
            self._monitor.kill_now()
            error = f"sandbox monitor failed: {exc}"
        self._finish(start, error=error)

    def _stopped_before_spawn(self, start: float) -> bool:
        """A stop that came before the spawn: end the run without starting anything."""
        with self._lock:
            request = self._pending_stop
        if request is None:
            return False
        self._started.set()
        self.note(f"stop requested before the start ({request.reason}); nothing was run")
        result = SandboxResult.not_run(self._gate.refused or "", time.monotonic() - start, self._log.text())
        if self._gate.refused is None:  # a stop, not an error (its input was not refused)
            result = replace(result, outcome="stopped", error=None, stop_reason=request.reason,
                             stop_status=request.status)
        self._finish(start, error=None, result=result)
        return True

    def _prepare(self) -> None:
        spec = self.spec
        self._place.make(spec, self._cgroups)
        if spec.log_file is not None:
            self._log.open_file(spec.log_file, spec.log_max_bytes)
        if self._masker.short_secrets_note and not spec.hold_input:  # held: once the input came
            self.emit(self._masker.short_secrets_note)

    def _spawn(self, server_only: bool = False) -> None:
        work_dir = self._place.work_dir
        assert work_dir is not None
        argv, env, options = command(self.spec, work_dir, self._place.cgroup)
        self._proc, self._spawned_by_server = start_process(
            self._spawner, options, argv, env, work_dir, self.spec.task_id, server_only)
        try:
            self._watch(self._proc)
        except BaseException:  # never leave a process nobody watches (no descriptor left, ...)
            self._kill_spawned()
            raise

    def _kill_spawned(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """The pipe threads and the monitor of a process just spawned."""
        spec = self.spec
        assert proc.stdin is not None and proc.stdout is not None and self._place.work_dir is not None
        reader = OutputReader(proc.stdout, self._masker, self._log.emit_output, spec.limits.output_bytes,
                              spec.task_id, self._log.room)
        writer = StdinWriter(proc.stdin, b"", spec.task_id)
        monitor = Monitor(self, proc, reader, writer, self._place.cgroup, self._place.work_dir, spec.limits)
        with self._lock:
            self._monitor = monitor
            if self._pending_stop is not None:  # came before it could wake it: its first sleep must not wait
                monitor.wake()
        self._gate.attach(lambda data: self._start_pipes(monitor, writer, data))

    def _start_pipes(self, monitor: Monitor, writer: StdinWriter, data: bytes) -> None:
        """Feed stdin, read the output on the run's thread (``InputGate``: once the input
        exists, with the masker holding its secrets)."""
        writer.set_data(data)
        monitor.read_output()
        writer.start()
        note = self._masker.short_secrets_note
        if note and self.spec.hold_input:  # counts the secrets given late too
            self.emit(note)

    def _finish(self, start: float, error: str | None, result: SandboxResult | None = None) -> None:
        monitor = self._monitor
        if result is None:
            if monitor is not None and monitor.breached:
                self._gate.stopped()  # a limit ended a held run: its input will never be given
            piped = self._gate.await_decision() if monitor is not None else False
            error = error or self._gate.refused
            read = error is None and piped  # the masked report file (``RunPlace.read_report``)
            report = self._place.read_report(self.spec, self._masker.mask, self.note) if read else None
            if monitor is not None and piped:
                monitor.close_streams()
            elif self._proc is not None:
                InputGate.drop_unread(self._proc)
            duration = time.monotonic() - max(start, self._began or start)  # adopted: from then
            text = self._log.take_text()  # the output is over: the log lets its chunks go
            result = (monitor.result(duration, text, report, error) if monitor is not None
                      else SandboxResult.not_run(error or "not started", duration, text))
        self.note(result.summary())
        self._log.close_file()
        # Reported from here on. A crash before the clean-up leaves what a crash during the run
        # leaves: the start-up sweeps remove it (``orphans``, ``workdir.sweep_work_dirs``).
        self._monitor = None  # it and the gate's starter refer back to this run: without the
        self._gate.detach()   # cycles, refcounting frees its output buffers (megabytes after a flood) now
        self._result = result
        with self._lock:
            self._known.set()
            callback, self._when_known = self._when_known, None
        cleaned = self._clean_up(quick=True)  # before the callback: see the module doc
        _call(callback, result, f"the result's callback of sandbox {self.spec.task_id}")
        if not cleaned:
            self._clean_up()  # a work dir that needs rmtree's walk: after the hand-over
        self._done.set()
        _call(self._on_exit, result, "on_exit callback")

    def _clean_up(self, quick: bool = False) -> bool:
        """``RunPlace.clean_up``: True once all is removed (``quick``: False when the work dir is
        left for a call without it, after the hand-over)."""
        spawner = self._spawner if self._spawned_by_server else None
        reaped = None if spawner is None else (lambda: spawner.reaped(used=self._gate.started))
        return self._place.clean_up(self.spec, self._gate.started, reaped, quick)


def _call(callback: Callable[[SandboxResult], None] | None, result: SandboxResult, what: str) -> None:
    """A result's receiver that fails is logged: the run's end (its slot, its clean-up) goes on."""
    if callback is not None:
        try:
            callback(result)
        except Exception:
            logger.exception("{} failed", what)


@dataclass
class _Stage:
    """How far ``start(here=True)`` went on the caller's thread."""

    prepared: bool = False
    spawned: bool = False
    error: Exception | None = None
