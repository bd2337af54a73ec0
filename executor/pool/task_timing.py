"""When a Task reports and how long it waits: the few timings a Task and its pool agree on.

A RUNNING report says "this request runs here": a Task that finds one younger than the live
window leaves the request to whoever sent it, and the poller's reconciliation reads the same
window. The Task keeps its own reports inside it.
"""

from __future__ import annotations

from executor.pool.context import PoolContext

LIVE_PROGRESS_PERIODS = 3
"""A RUNNING result reported within this many progress intervals is live: it runs elsewhere."""
QUIET_PROGRESS_PERIODS = 2
"""While the log tail stays the same, RUNNING goes out only every this many intervals: enough
to stay live (under ``LIVE_PROGRESS_PERIODS``), and a quiet recipe costs GMS half the calls."""


def live_window_s(pool: PoolContext) -> float:
    """How recent a RUNNING report must be to mean the request runs elsewhere now."""
    return LIVE_PROGRESS_PERIODS * pool.pool.progress_interval_s


def first_running_s(pool: PoolContext) -> float:
    """When a run's first RUNNING goes out, after its admission: ``running_after_s`` (the config
    refuses more than one progress interval: a run must look live to a duplicate's check within
    three)."""
    return pool.pool.running_after_s


def resolve_deadline_s(pool: PoolContext) -> float:
    """How long a ``Resolve`` may go unanswered: a few bounded GMS calls, then it was lost."""
    return 2 * pool.gms_call_s + 5.0
