"""The pool's subtree: five children under one one_for_one supervisor, and the pool's Tasks.

The root parks a pool whose subtree keeps failing (``ChildSpec.parks``): the other pools run
on, and the process gives up only when every pool is parked (``executor.service``).

Start order matters only for the first messages: the leaser and resolver come up before
the runner and the poller, and the reporter flushes its outbox before any new work arrives.
Siblings reach each other through the pool supervisor's directory, by name.

Threads: the pool supervisor, leaser, resolver and runner share one thread, the pool's strand
(``executor.supervision.strand``; kernel name ``pool@<id>``): none of their handlers blocks
longer than one bounded GMS call or an outbox write. The reporter runs on the process's
``reporters`` strand (given by the service), beside the other pools' reporters: on the pool's
strand its result and RUNNING sends held up the secret fetches and task starts behind them
(4-worker throughput 6.0-6.5 against 9.1-9.9 tasks/s, docs/performance.md). The poller, whose
long poll blocks for up to 20 s, keeps a thread of its own; each Task has its own too. So a
pool costs two threads at rest.

The Tasks are the pool's, not the runner's (``executor.pool.taskbook``): a runner restart
adopts them, and only the pool's stop stops them (the runner's ``stop_shared``). Children stop
in reverse start order: the poller, which starts the Tasks, stops first, so none is started
meanwhile; then the runner, then its Tasks, while the reporter still takes their
interruptions. Their threads are linked to
the pool supervisor's lifeline, so the pool is restarted only once they have ended.
"""

from __future__ import annotations

from collections.abc import Callable

from executor.backoff import Backoff
from executor.pool.context import PoolContext
from executor.pool.leaser import CredentialLeaser
from executor.pool.messages import LEASER, POLLER, REPORTER, RESOLVER, RUNNER
from executor.pool.poller import QueuePoller
from executor.pool.reporter import Reporter
from executor.pool.resolver import SecretResolver
from executor.pool.runner import TaskRunner, stop_tasks
from executor.supervision import ChildSpec, SupervisorPolicy, supervisor_spec
from executor.supervision.strand import Strand

POOL_POLICY = SupervisorPolicy(
    max_restarts=5,
    period_s=30.0,
    backoff=Backoff(min_s=0.25, max_s=8.0, reset_after_s=30.0),
)
"""A child that keeps crashing escalates after its 6th crash, about 8-10 s in (backoff 0.25, 0.5,
1, 2, 4 s). The backoff must let that happen within ``period_s``: with a backoff that outgrows
the period, a crash loop would never escalate and the root could never park the pool
(``tests/faults/test_policies.py`` checks this)."""


def pool_strand(pool: PoolContext) -> Strand:
    """The thread the pool's quiet actors share (every incarnation of them)."""
    return Strand(f"root/pool:{pool.pool_id}/strand", f"pool@{pool.pool_id}"[:15])


def pool_children(
    pool: PoolContext, strand: Strand | None = None, reporters: Strand | None = None
) -> list[ChildSpec]:
    """The pool's child specs, in start order; all but the poller on ``strand`` if given, the
    reporter on ``reporters`` if given."""
    wait = float(pool.pool.poll_wait_s)
    grace = pool.pool.limits.kill_grace_s
    return [
        ChildSpec(LEASER, lambda ctx: CredentialLeaser.start(ctx, pool), 10.0, strand=strand),
        ChildSpec(RESOLVER, lambda ctx: SecretResolver.start(ctx, pool), 10.0, strand=strand),
        ChildSpec(REPORTER, lambda ctx: Reporter.start(ctx, pool), 15.0, strand=reporters or strand),
        ChildSpec(
            RUNNER,
            lambda ctx: TaskRunner.start(ctx, pool),
            grace + 20.0,
            stop_shared=lambda: stop_runs(pool),
            strand=strand,
        ),
        ChildSpec(POLLER, lambda ctx: QueuePoller.start(ctx, pool), wait + 10.0),
    ]


def stop_runs(pool: PoolContext) -> None:
    """The pool stops or restarts: its Tasks, then its warm spare (``executor.pool.warm``)."""
    stop_tasks(pool)
    pool.warm.clear()


def pool_spec(
    pool: PoolContext, on_restart: Callable[[str], None] | None = None, reporters: Strand | None = None
) -> ChildSpec:
    """The child spec of the pool's supervisor, for the root; it runs on the pool's strand."""
    strand = pool_strand(pool)
    children = pool_children(pool, strand, reporters)
    tasks = pool.pool.limits.kill_grace_s + 5.0  # stop_tasks, after the runner's own stop
    timeout = sum(c.stop_timeout_s for c in children) + tasks + 5.0
    name = f"pool:{pool.pool_id}"
    return supervisor_spec(name, children, POOL_POLICY, on_restart, timeout, parks=True, strand=strand)
