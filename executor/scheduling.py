"""The executor's own threads run under ``SCHED_BATCH``; recipes keep the policy it started with.

A task is handed between several of the executor's threads (the poller, the Task, the resolver,
the run's thread, the run log's, the reporters'), and each must take the interpreter lock to
run. Under the default policy (``SCHED_OTHER``) a thread woken by another may preempt its waker
on its CPU, only to wait at once for the lock the waker still holds: two more context switches
for one hand-over, each paid in CPU. Under ``SCHED_BATCH`` a woken thread never preempts on its
wake-up (it runs at once on an idle CPU, else at the running thread's next tick); its share of
the CPU, its nice value and its limits are those of ``SCHED_OTHER``. Counted with the kernel's
scheduler trace over trivial tasks (docs/performance-log.md, session 21): the executor's
context switches per task 68 -> 42 (waits for the interpreter lock 17 -> 2, preemptions 15 ->
3), its CPU per task 0.25-0.8 ms less. The price: with every CPU busy, a woken executor thread
waits for its CPU instead of taking it. With both cores of the bench's machine kept busy, a
recipe's exit was noticed 21-24 ms after it instead of 7.6-7.7 (p50), while the pickup went
from 19-23 ms to 10-12.

Only a process that runs ``SCHED_OTHER`` switches (a policy an operator chose, batch, idle or a
real-time one, stays as it is), and ``ExecutorConfig.batch_scheduling`` turns it off. A recipe is
not the executor's to re-class: its process goes back to ``SCHED_OTHER`` before its exec (the
exec wrapper's ``--policy``, ``recipe_options``); the executor's other children (the spawn
server, venv builds) keep ``SCHED_BATCH``, which they inherit.
"""

from __future__ import annotations

import os

from loguru import logger

_recipe_policy: int | None = None
"""The policy a recipe's process is given back before its exec; None while nothing switched."""


def run_as_batch() -> bool:
    """Put every thread of this process under ``SCHED_BATCH`` (the threads started later inherit
    it) when the process runs ``SCHED_OTHER``; True when it switched. Best effort: where the
    platform has no such policy or refuses, everything stays as it was (and recipes are told
    nothing)."""
    global _recipe_policy
    batch, other = getattr(os, "SCHED_BATCH", None), getattr(os, "SCHED_OTHER", None)
    if batch is None or other is None:
        return False
    try:
        if os.sched_getscheduler(0) != other:
            return False  # the operator's choice (systemd's CPUSchedulingPolicy=, chrt) stays
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setscheduler(int(tid), batch, os.sched_param(0))
            except ProcessLookupError:
                continue  # a thread that ended meanwhile
    except OSError as exc:
        logger.debug("the executor's threads stay under SCHED_OTHER: {}", exc.strerror or exc)
        return False
    _recipe_policy = other
    return True


def recipe_options() -> list[str]:
    """The exec wrapper's options that give a recipe's process the policy the executor started
    with (none while the executor did not switch)."""
    return [] if _recipe_policy is None else ["--policy", str(_recipe_policy)]
