"""The watch loop of one run: sample the tree, enforce the limits, stop it, say how it ended.

The loop sleeps between samples for as long as ``pacing`` allows (up to 1 s while every limit
is far, down to 5 ms as memory nears a limit the monitor enforces itself); while every limit is
far, the run's looks are handed over to one thread for every run (``far_looks``), and its own
sleeps until something happens. The main process's exit or a ``stop`` wakes it at once
(``waiter``: a pidfd and an eventfd), so a finished recipe is noticed within milliseconds, not
at the next sample. The same sleep reads the output as it comes (one thread per run; output past
its limit ends it). Each sample reads only the run's own processes (``tree``). Memory is the
tree's real footprint (the cgroup's usage, else proportional set sizes), and the reported peak
is the cgroup's own maximum where there is one, so a kernel kill reports what the kernel saw.

A memory breach is already over the limit, so the tree gets SIGKILL at once. Any other
breach, and a ``stop``, sends SIGTERM to the process group and every member, and SIGKILL after
the grace, or at once if during the grace the tree passes a hard ceiling (memory 1.25 x,
processes 2 x the limit). When the main process exits, leftover members are stopped the same
way, so no process of a run outlives it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple, Protocol

from executor.sandbox.cgroups import TaskCgroup
from executor.sandbox.far_looks import FAR_LOOKS
from executor.sandbox.limits import SandboxLimits, format_seconds
from executor.sandbox.pacing import FAR_INTERVAL_S, MIN_INTERVAL_S, Pacer
from executor.sandbox.result import LimitBreach, Outcome, SandboxResult
from executor.sandbox.streams import OutputReader, StdinWriter
from executor.sandbox.tree import ProcessTree, TreeSample
from executor.sandbox.waiter import ExitWaiter
from executor.sandbox.workdir import dir_usage

DISK_CHECK_S = 1.0
GIVE_UP_S = 10.0
HANDED_OVER_WAIT_S = 60.0
"""The longest sleep of a run whose looks ``far_looks`` took: a bound should that thread stall."""
READ_END_S = 2.0
"""How long the output is read after the tree is gone, for a pipe something else still holds."""
MEMORY_CEILING = 1.25
PROCESS_CEILING = 2


class StopRequest(NamedTuple):
    """A stop asked of a run: why, the SIGTERM -> SIGKILL grace (None: the limits' grace) and
    the status its result will carry."""

    reason: str
    grace_s: float | None
    status: str

    def then(self, grace_s: float | None) -> StopRequest:
        """This stop with a later one's grace: a later stop never weakens an earlier one (the
        first reason and status stay), and the shorter grace wins (None, the limits' grace,
        gives way to any grace given)."""
        if self.grace_s is None or grace_s is None:
            return self if grace_s is None else self._replace(grace_s=grace_s)
        return self._replace(grace_s=min(self.grace_s, grace_s))


class RunHooks(Protocol):
    """What the monitor needs from its run."""

    def take_stop_request(self) -> StopRequest | None: ...

    def note(self, text: str) -> None: ...


class Monitor:
    """Watches one process tree until it is gone; driven by the run's supervisor thread."""

    def __init__(self, run: RunHooks, proc: subprocess.Popen[bytes], reader: OutputReader,
                 writer: StdinWriter, cgroup: TaskCgroup | None, work_dir: Path,
                 limits: SandboxLimits) -> None:
        self._run = run
        self._proc = proc
        self.reader = reader
        self._writer = writer
        self._cgroup = cgroup
        self._work_dir = work_dir
        self._limits = limits
        self._tree = ProcessTree(proc.pid, cgroup, limits.memory_bytes)
        self._waiter = ExitWaiter(proc.pid)
        kernel_memory = cgroup is not None and cgroup.memory_dir is not None
        kernel_processes = cgroup is not None and cgroup.pids_dir is not None
        self._pacer = Pacer(limits, kernel_memory, kernel_processes, self._waiter.exit_watched,
                            cgroup_lists_tree=cgroup is not None and bool(cgroup.dirs))
        self._deadline: float | None = None
        self._killed = False
        self._breach: LimitBreach | None = None
        self._stop: tuple[str, str] | None = None
        self._next_disk_check = 0.0
        self._clock = time.monotonic()
        """Where the wall time counts from: the loop's start, or a warm spare's adoption."""
        self.peak_memory = 0
        self.peak_processes = 0
        self.cpu_seconds = 0.0
        self.look_lock = threading.Lock()
        """Held by whichever thread looks at a run handed over to ``far_looks``."""

    def wake(self) -> None:
        """Look again now (a stop was requested)."""
        self._waiter.wake()

    def restart_clock(self) -> None:
        """A warm spare was adopted: its wall time counts from now (``executor.pool.warm``)."""
        self._clock = time.monotonic()

    @property
    def ending(self) -> bool:
        """True once the tree was signalled to end (a limit or a stop)."""
        return self._deadline is not None

    def read_output(self) -> None:
        """From any thread: read the output from now on, in the loop's waits (``waiter``)."""
        self._waiter.read_output(self.reader)

    def run(self) -> None:
        """Loop until the main process has exited and no member is left."""
        started = self._clock = time.monotonic()
        self._next_disk_check = started + DISK_CHECK_S
        try:
            self._waiter.wait(self._first_interval(started))
            while True:
                returncode = self._poll_exit()
                sample = self._tree.sample(exited=returncode is not None)
                self._record(sample)
                if returncode is not None and sample.processes == 0:
                    # Done. A limit the loop did not see can only be one the kernel enforced.
                    self._settle_late_breach(returncode)
                    return
                now = time.monotonic()
                if self._deadline is None:
                    self._check(sample, now - self._clock, returncode)
                else:
                    self._escalate(sample, now)
                if self._deadline is not None and now > self._deadline + GIVE_UP_S:
                    self._run.note("processes still alive long after SIGKILL; giving up waiting for them")
                    self.kill_now()
                    return
                self._sleep(self._interval(sample, now, now - self._clock, returncode))
        finally:
            self._waiter.close()
            self._tree.close()

    def _sleep(self, interval: float) -> None:
        """Sleep until the next look; a far one (every limit far, the exit and the tree the
        kernel's to tell) is ``far_looks``' to take, and this thread sleeps until it, the exit,
        the output's limit or a stop wakes it."""
        if interval < FAR_INTERVAL_S or not self._pacer.kernel_watches:
            self._waiter.wait(interval)
            return
        with self.look_lock:
            FAR_LOOKS.add(self)
        try:
            self._waiter.wait(self._handed_over_wait())
        finally:
            with self.look_lock:
                FAR_LOOKS.remove(self)

    def _handed_over_wait(self) -> float:
        """The own thread's bound while handed over: ``HANDED_OVER_WAIT_S``, and never past the
        wall-time deadline, so that limit holds even if a look of the shared thread hangs."""
        wall = self._limits.wall_seconds
        if wall is None:
            return HANDED_OVER_WAIT_S
        left = wall - (time.monotonic() - self._clock) + MIN_INTERVAL_S
        return max(MIN_INTERVAL_S, min(HANDED_OVER_WAIT_S, left))

    def far_look(self) -> bool:
        """On ``far_looks``' thread, under ``look_lock``: one look at a run whose limits were
        all far. True when its own thread must look now: a limit is breached (the run's thread
        finds it again and acts), or one could come near before the next far look."""
        sample = self._tree.sample()
        self._record(sample)
        now = time.monotonic()
        elapsed = now - self._clock
        if self._breach_now(sample, elapsed) is not None:
            return True
        return self._interval(sample, now, elapsed, None) < FAR_INTERVAL_S

    def _first_interval(self, now: float) -> float:
        """The sleep before the first sample, paced as after an empty one: the recipe was just
        forked and holds nothing yet, so a sample now would only find that (a trivial recipe
        then needs one sample, after its exit). Its exit, a stop or a limit come near end the
        sleep as any other. The first disk check is a paced one too, ``DISK_CHECK_S`` in: a
        fresh work dir holds nothing yet, and RLIMIT_FSIZE bounds each file meanwhile."""
        disk_due = self._next_disk_check - now if self._limits.disk_bytes is not None else None
        return self._pacer.next_interval(now, 0.0, TreeSample(0, 0.0, 0), self.reader.bytes_read, disk_due)

    def _poll_exit(self) -> int | None:
        """The main process's exit status once it has exited (reaping it); None while it runs.

        With a pidfd the waiter says when it exited, so a running process costs no syscall.
        """
        if self._proc.returncode is not None:  # reaped already (``_stop_requested``)
            return self._proc.returncode
        if self._waiter.exit_watched and not self._waiter.exited:
            return None
        return self._proc.poll()

    def _interval(self, sample: TreeSample, now: float, elapsed: float, returncode: int | None) -> float:
        """How long to sleep: paced while the run goes on, the configured interval while it ends."""
        if self._deadline is not None or returncode is not None:
            return self._limits.sample_interval_s
        disk_due = self._next_disk_check - now if self._limits.disk_bytes is not None else None
        return self._pacer.next_interval(now, elapsed, sample, self.reader.bytes_read, disk_due)

    def _record(self, sample: TreeSample) -> None:
        self.peak_memory = max(self.peak_memory, sample.memory_bytes)
        self.peak_processes = max(self.peak_processes, sample.processes)
        self.cpu_seconds = max(self.cpu_seconds, sample.cpu_seconds)

    def _check(self, sample: TreeSample, elapsed: float, returncode: int | None) -> None:
        grace = self._limits.kill_grace_s
        breach = self._breach_now(sample, elapsed)
        stop = self._run.take_stop_request()
        if breach is not None:
            self._breach = breach
            # Memory over the limit only grows during a grace period: no grace for it.
            self._terminate(breach.message, 0 if breach.limit == "memory" else grace)
        elif stop is not None:
            reason, stop_grace, status = stop
            self._stop_requested(reason, status, grace if stop_grace is None else stop_grace, sample,
                                 returncode)
        elif returncode is not None and sample.processes > 0:
            self._terminate(f"main process exited; stopping {sample.processes} leftover process(es)", grace)

    def _stop_requested(self, reason: str, status: str, grace: float, sample: TreeSample,
                        returncode: int | None) -> None:
        """A stop ends the run only if its main process is still there when the signal goes:
        a recipe that had exited by then ended on its own (its exit is the outcome, whatever
        the stop), and only what it left behind is stopped. Looked at just before the signal
        (``poll`` reaps a process that has exited), so only an exit in the microseconds between
        that look and the signal counts as stopped."""
        if returncode is None and self._proc.poll() is None:
            self._stop = (reason, status)
            self._terminate(f"stop requested: {reason}", grace)
        elif returncode is not None and sample.processes > 0:
            self._terminate(f"main process exited before the stop ({reason}); stopping "
                            f"{sample.processes} leftover process(es)", grace)
        # else it exited just now: the next look collects it (and stops what it left behind)

    def _breach_now(self, sample: TreeSample, elapsed: float) -> LimitBreach | None:
        limits, cgroup = self._limits, self._cgroup
        if limits.wall_seconds is not None and elapsed > limits.wall_seconds:
            return LimitBreach.of("wall_time", elapsed, limits.wall_seconds)
        if limits.memory_bytes is not None:
            if sample.memory_bytes > limits.memory_bytes:
                return LimitBreach.of("memory", sample.memory_bytes, limits.memory_bytes)
            if cgroup is not None and cgroup.oom_kills() > 0:
                return self._oom_breach(limits.memory_bytes)
        if limits.max_processes is not None:
            if sample.processes > limits.max_processes:
                return LimitBreach.of("processes", sample.processes, limits.max_processes)
            refused = cgroup.fork_refusals() if cgroup is not None else 0
            if refused:
                return LimitBreach.of("processes", max(sample.processes, limits.max_processes),
                                      limits.max_processes, f"the cgroup refused {refused} fork(s)")
        if limits.cpu_seconds is not None and sample.cpu_seconds > limits.cpu_seconds:
            return LimitBreach.of("cpu", sample.cpu_seconds, limits.cpu_seconds)
        if limits.output_bytes is not None and self.reader.over_limit:
            return LimitBreach.of("output", self.reader.bytes_read, limits.output_bytes)
        return self._disk_breach()

    def _oom_breach(self, limit: int) -> LimitBreach:
        """The kernel refused a charge past ``limit``: the demand reached it (the cgroup's peak)."""
        peak = max(self._cgroup.peak_memory() or 0 if self._cgroup else 0, limit)
        return LimitBreach.of("memory", peak, limit, "the kernel killed a process at the cgroup limit")

    def _disk_breach(self) -> LimitBreach | None:
        limit = self._limits.disk_bytes
        now = time.monotonic()
        if limit is None or now < self._next_disk_check:
            return None
        self._next_disk_check = now + DISK_CHECK_S
        used = dir_usage(self._work_dir)
        return LimitBreach.of("disk", used, limit) if used > limit else None

    def _terminate(self, why: str, grace: float) -> None:
        self._deadline = time.monotonic() + grace
        if grace <= 0:
            self._kill()
            self._run.note(f"{why}: SIGKILL to the process tree now")
        else:
            self._tree.signal(signal.SIGTERM)
            self._run.note(f"{why}: SIGTERM to the process tree, SIGKILL after {format_seconds(grace)}")

    def _escalate(self, sample: TreeSample, now: float) -> None:
        assert self._deadline is not None
        stop = self._run.take_stop_request()
        if stop is not None and stop.grace_s is not None:
            self._deadline = min(self._deadline, now + stop.grace_s)
        if self._killed:
            if sample.processes:
                self._tree.signal(signal.SIGKILL)
        elif now >= self._deadline:
            self._run.note("grace period over: SIGKILL")
            self._kill()
        elif self._over_ceiling(sample):
            self._run.note("still growing during the grace period: SIGKILL now")
            self._kill()

    def _over_ceiling(self, sample: TreeSample) -> bool:
        limits = self._limits
        memory, processes = limits.memory_bytes, limits.max_processes
        return bool((memory is not None and sample.memory_bytes > memory * MEMORY_CEILING)
                    or (processes is not None and sample.processes > processes * PROCESS_CEILING))

    def _kill(self) -> None:
        self._killed = True
        self._tree.signal(signal.SIGKILL)

    def kill_now(self) -> None:
        """SIGKILL everything and reap the main process (bounded wait)."""
        self._kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)

    def close_streams(self) -> None:
        """Read the output to its end, for ``READ_END_S`` at most (a process that left the tree
        may still hold the pipe: the run does not wait for it), and stop the stdin writer.

        A run that printed past the output limit and exited before the loop noticed still
        ends with the output breach: the count is final only now.
        """
        self.reader.drain(READ_END_S)
        self._writer.stop()
        self._writer.join(1.0)
        limit = self._limits.output_bytes
        if self._breach is None and limit is not None and self.reader.over_limit:
            self._breach = LimitBreach.of("output", self.reader.bytes_read, limit)
            self._run.note(f"{self._breach.message}: the run ended at the limit")

    @property
    def breached(self) -> bool:
        """A limit ended the run (``result`` says which)."""
        return self._breach is not None

    def result(self, duration: float, log_text: str, report: str | None, error: str | None) -> SandboxResult:
        """How the run ended, from what the loop saw and the main process's exit status."""
        code = self._proc.returncode
        exit_code = code if code is not None and code >= 0 else None
        sig = -code if code is not None and code < 0 else None
        breach = self._breach
        stop = self._stop if breach is None else None
        outcome: Outcome = "error" if error else "limit" if breach else "stopped" if stop else "exited"
        return SandboxResult(
            outcome=outcome, exit_code=exit_code, signal=sig, breach=breach,
            stop_reason=stop[0] if stop else None, stop_status=stop[1] if stop else None,
            duration_s=duration, peak_rss_bytes=self._real_peak(), cpu_seconds=self.cpu_seconds,
            max_processes=self.peak_processes, output_bytes=self.reader.bytes_read,
            log_text=log_text, report_json=report, error=error)

    def _real_peak(self) -> int:
        """The cgroup's own maximum where it keeps one (else the sampled maximum), never below a
        memory breach's value, so the report's peak and the breach agree."""
        kept = self._cgroup.peak_memory() if self._cgroup is not None else None
        peak = self.peak_memory if kept is None else kept
        if self._breach is not None and self._breach.limit == "memory":
            peak = max(peak, int(self._breach.measured))
        return peak

    def _settle_late_breach(self, returncode: int) -> None:
        if self._breach is None:
            exit_code, sig = (returncode, None) if returncode >= 0 else (None, -returncode)
            cpu = self._limits.cpu_seconds
            if cpu is not None and self.cpu_seconds > cpu:
                self._breach = LimitBreach.of("cpu", self.cpu_seconds, cpu)
            else:
                self._breach = self._late_breach(exit_code, sig)
            if self._breach is not None:
                self._run.note(f"{self._breach.message}: the run ended at the limit")

    def _late_breach(self, exit_code: int | None, sig: int | None) -> LimitBreach | None:
        """Limits that ended the run without the loop seeing it: kernel OOM, rlimit signals."""
        limits, cgroup = self._limits, self._cgroup
        if limits.memory_bytes is not None and cgroup is not None and cgroup.oom_kills() > 0:
            return self._oom_breach(limits.memory_bytes)
        if sig == signal.SIGXCPU and limits.cpu_seconds is not None:
            return LimitBreach.of("cpu", max(self.cpu_seconds, limits.cpu_seconds), limits.cpu_seconds,
                                  "a process hit its RLIMIT_CPU")
        if sig == signal.SIGXFSZ and limits.disk_bytes is not None:
            return LimitBreach.of("disk", limits.disk_bytes, limits.disk_bytes, "a file hit RLIMIT_FSIZE")
        failed = sig is not None or exit_code not in (0, None)
        refused = cgroup.fork_refusals() if cgroup is not None and failed else 0  # read only if it matters
        if refused and limits.max_processes is not None:
            return LimitBreach.of("processes", limits.max_processes, limits.max_processes,
                                  f"the cgroup refused {refused} fork(s)")
        return None

