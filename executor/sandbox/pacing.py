"""How long the monitor may sleep before its next sample: long while every limit is far,
short as one comes near.

Each sample costs CPU for as long as a task runs, and the time between two samples is also how
far a limit can be overshot. So the next sample is due when the nearest limit could be
reached at the fastest plausible rate, within [5 ms, 1 s]:

* wall time: its deadline;
* CPU: the seconds left spread over every CPU of the host (the tree cannot burn faster);
* memory, where the monitor enforces it (no memory cgroup): the headroom at twice the growth
  seen between the last two samples, and at least 2 GiB/s, so a hog growing 1 GiB/s is
  sampled every 5 ms as it reaches the limit;
* output: the bytes left at twice the rate seen, and at least 256 MiB/s;
* processes without a pids cgroup: forks cannot be foreseen, so the configured
  ``sample_interval_s`` once the tree holds a quarter of the limit, four times that before;
* disk: its own once-a-second check.

Where a cgroup holds memory or processes the kernel enforces them with no overshoot, so they
do not shorten the sleep. Without a cgroup the sleep is never longer than the configured
``sample_interval_s`` either: the tree is then found by walking down from the main process,
and a process that leaves the session after its parent died must be seen before the main
process exits (after that, nothing leads to it). The main process's exit and stop requests
wake the monitor at once (``waiter``); where the exit cannot wake it, the configured
interval bounds the sleep too.
"""

from __future__ import annotations

import os

from executor.sandbox.limits import GiB, MiB, SandboxLimits
from executor.sandbox.tree import TreeSample

MIN_INTERVAL_S = 0.005
FAR_INTERVAL_S = 1.0
MEMORY_RATE = 2 * GiB
"""Bytes per second a tree is assumed able to grow by, at least."""
OUTPUT_RATE = 256 * MiB
_CPUS = os.cpu_count() or 1
"""The host's CPUs, looked up once (``os.cpu_count`` reads sysfs at every call)."""


class Pacer:
    """The next sample's delay for one run, from its limits and the rates seen so far."""

    def __init__(self, limits: SandboxLimits, kernel_memory: bool, kernel_processes: bool,
                 exit_watched: bool, cgroup_lists_tree: bool) -> None:
        self._limits = limits
        self._kernel_memory = kernel_memory
        self._kernel_processes = kernel_processes
        self.kernel_watches = exit_watched and cgroup_lists_tree
        """The exit wakes the monitor and the cgroup lists the tree: a far look may be seldom,
        and ``far_looks`` may take it."""
        self._far = FAR_INTERVAL_S if self.kernel_watches else limits.sample_interval_s
        self._cpus = _CPUS
        self._last: tuple[float, int, int] | None = None

    def next_interval(self, now: float, elapsed: float, sample: TreeSample, output_bytes: int,
                      disk_due: float | None = None) -> float:
        """Seconds until the next sample should be taken."""
        memory_rate, output_rate = self._rates(now, sample.memory_bytes, output_bytes)
        limits = self._limits
        due = [self._far]
        if disk_due is not None:
            due.append(disk_due)
        if limits.wall_seconds is not None:
            due.append(limits.wall_seconds - elapsed + MIN_INTERVAL_S)
        if limits.cpu_seconds is not None:
            due.append((limits.cpu_seconds - sample.cpu_seconds) / self._cpus)
        if limits.memory_bytes is not None and not self._kernel_memory:
            due.append((limits.memory_bytes - sample.memory_bytes) / max(MEMORY_RATE, 2 * memory_rate))
        if limits.output_bytes is not None:
            due.append((limits.output_bytes - output_bytes) / max(OUTPUT_RATE, 2 * output_rate))
        if limits.max_processes is not None and not self._kernel_processes:
            near = sample.processes * 4 > limits.max_processes
            due.append(limits.sample_interval_s * (1 if near else 4))
        return min(self._far, max(MIN_INTERVAL_S, min(due)))

    def _rates(self, now: float, memory: int, output: int) -> tuple[float, float]:
        """Growth of memory and output per second since the previous call."""
        last, self._last = self._last, (now, memory, output)
        if last is None or now <= last[0]:
            return 0.0, 0.0
        span = now - last[0]
        return max(0.0, (memory - last[1]) / span), max(0.0, (output - last[2]) / span)
