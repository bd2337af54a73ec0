"""The executor process: builds the actor tree from the config and owns signals and exit codes.

Root supervisor (one_for_one) -> Observability, then one pool subtree per configured pool; a
pool that keeps failing is parked while the others run on (``ROOT_POLICY``).
The main thread never runs inside an actor: it waits for a signal or for the root to give up.
First SIGTERM/SIGINT: stop receiving, let running tasks drain for ``shutdown.drain_s``, then
interrupt them (FAILURE that a later run may overwrite, messages released), write the last
presence and stop the tree in reverse order -> exit 0. A second signal skips the drain.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from types import FrameType
from typing import Any

import pykka
from loguru import logger

from executor.backoff import Backoff
from executor.config import ExecutorConfig
from executor.datahub.aspects import instance_id
from executor.exitcodes import ExitCode
from executor.main_wake import MainWake
from executor.observer import observer_spec
from executor.pool.context import PoolContext
from executor.pool.messages import REPORTER, RUNNER, Drain, InterruptAll, ReportPresence
from executor.pool.reporter import outbox_of
from executor.pool.sandboxing import work_roots
from executor.pool.supervisor import pool_spec
from executor.pool.warm import close_all
from executor.sandbox import reap_orphans
from executor.sandbox.spawner import SpawnServer
from executor.sandbox.workdir import sweep_work_dirs
from executor.supervision import SupervisorPolicy, start_root
from executor.supervision.spare_threads import SPARES
from executor.supervision.strand import Strand
from executor.supervision.supervisor import Supervisor

ONCE_EXIT = {"SUCCESS": ExitCode.OK, "TIMEOUT": ExitCode.TIMEOUT, "CANCELLED": ExitCode.CANCELLED}
ROOT_POLICY = SupervisorPolicy(
    max_restarts=3,
    period_s=120.0,
    backoff=Backoff(min_s=1.0, max_s=30.0, reset_after_s=120.0),
    park_backoff=Backoff(min_s=300.0, max_s=1800.0, reset_after_s=3600.0),
)
"""A pool that fails 4 times within 2 minutes (a child crash loop takes ~10 s to escalate, plus
1, 2, 4 s of backoff here) is parked: stopped, not ready with the reason, started again after 5
minutes (up to 30 while it keeps failing), while the other pools run on. When every pool is
parked, or the observability child fails that often, the process exits with code 3 for systemd
/ Kubernetes."""
POLL_S = 0.2
MAIN_WAIT_S = 60.0
"""The main thread's sleep between looks at its events; every setter also wakes it at once."""
OUTBOX_WAIT_S = 10.0


class Service:
    """One executor process: its tree, its shutdown, its exit code."""

    def __init__(
        self, config: ExecutorConfig, token: str, health: Any = None, metrics: Any = None, once: bool = False
    ) -> None:
        self.config = config
        self.once = once
        self.once_status: str | None = None
        self.health = health
        self.metrics = metrics
        self.stop_requested = threading.Event()
        self.force_requested = threading.Event()
        self.escalated = threading.Event()
        self._wake = MainWake()
        """Set with either of the two above: the main thread sleeps on it, not on a 1 s tick, and
        a signal delivered to another thread wakes it too (``executor.main_wake``)."""
        self.escalation_reason: str | None = None
        self._signals = 0
        started = time.time()
        suffix = uuid.uuid4().hex[:8]
        self.spawner = SpawnServer()
        gms_host = config.gms.url.split("://", 1)[-1].split("/", 1)[0]
        self.pools = [
            PoolContext(
                config=config,
                pool=p,
                token=token,
                health=health,
                metrics=metrics,
                instance_id=instance_id(p.id, gms_host, suffix),
                started_at=started,
                once=once,
                on_delivered=self._delivered if once else None,
                spawner=self.spawner,
            )
            for p in config.pools
        ]
        self.root: pykka.ActorRef[Supervisor] | None = None
        self._spares_open = False
        """This executor opened ``SPARES`` (``start``) and has not let them go yet."""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the state directories and start the tree."""
        for pool in self.pools:
            os.makedirs(pool.state_dir, mode=0o700, exist_ok=True)
            if self.metrics is not None:
                self.metrics.init_pool(pool.pool_id, pool.pool.max_workers)
        reap_orphans()  # recipe trees (and cgroups) of an earlier executor that was SIGKILLed
        for pool in self.pools:  # and their work dirs: no run of ours is live yet
            for root in work_roots(pool):
                sweep_work_dirs(root)
        # The spawn server is not started here: the first launch starts it while that run is
        # prepared, so an executor that has not run a task (or not for ``IDLE_S``) holds no
        # second process (docs/sandbox.md).
        on_restart = self.metrics.count_restart if self.metrics is not None else None
        if not self._spares_open:  # finished tasks' threads wait for the next task's work
            SPARES.open()
            self._spares_open = True
        control = Strand("control")  # the root and the Observer share a thread (docs/design.md)
        specs = [observer_spec(self.config, self.health, self.metrics, control)]
        reporters = Strand("reporters")  # every pool's reporter: off the pools' task-start path
        specs += [pool_spec(pool, on_restart, reporters) for pool in self.pools]
        self.root = start_root(
            "root", specs, ROOT_POLICY, self._on_escalate, on_restart, self._on_park, strand=control
        )
        logger.info(
            "executor started with {} pool(s): {}", len(self.pools), ", ".join(p.pool_id for p in self.pools)
        )

    def run_until_stopped(self) -> ExitCode:
        """Block until a signal (or escalation), then shut down; return the exit code."""
        while not (self.stop_requested.is_set() or self.escalated.is_set()):
            self._wake.wait(MAIN_WAIT_S)
        if self.escalated.is_set():
            logger.error("the root supervisor gave up: {}", self.escalation_reason)
            self._stop_tree()
            return ExitCode.ESCALATED
        self.shutdown()
        if self.once_status is not None:
            return ONCE_EXIT.get(self.once_status, ExitCode.FAILURE)
        return ExitCode.OK

    def shutdown(self) -> None:
        """Drain (unless forced), report the stop, and stop the tree."""
        drain_s = 0.0 if self.force_requested.is_set() else self.config.shutdown.drain_s
        deadline = time.monotonic() + drain_s
        logger.info("stopping: draining running tasks for up to {:.0f}s", drain_s)
        if self.health is not None:
            self.health.mark_stopping("draining before shutdown")
        self._tell_pools(RUNNER, Drain(deadline))  # admission closes first: no task while spares go
        close_all(pool.warm for pool in self.pools)  # no recipe waits for a task that will not come
        while self._running() > 0 and time.monotonic() < deadline and not self.force_requested.is_set():
            self.force_requested.wait(POLL_S)
            self._tell_pools(RUNNER, Drain(deadline))  # a runner restarted meanwhile must drain too
        if self._running() > 0:
            self._tell_pools(RUNNER, InterruptAll("the executor is shutting down"))
            grace_end = time.monotonic() + max(p.pool.limits.kill_grace_s for p in self.pools) + 5.0
            while self._running() > 0 and time.monotonic() < grace_end:
                time.sleep(POLL_S)
        self._wait_for_outboxes(deadline=time.monotonic() + OUTBOX_WAIT_S)
        self._tell_pools(REPORTER, ReportPresence(stopped=True))
        self._stop_tree()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: first drains, second forces. Main thread only."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._wake.catch_signals()

    # -- helpers ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "received {}; stopping (send it again to skip the drain)", signal.Signals(signum).name
            )
            self.stop_requested.set()
        else:
            logger.warning("received {} again; stopping now", signal.Signals(signum).name)
            self.force_requested.set()
            self.stop_requested.set()
        self._wake.set()

    def _delivered(self, urn: str, status: str) -> None:
        """``--once``: the first delivered terminal result ends the run."""
        if self.once_status is None:
            logger.info("--once: {} finished with {}", urn, status)
            self.once_status = status
            self.stop_requested.set()
            self._wake.set()

    def _on_park(self, child: str, why: str, delay_s: float) -> None:
        """The root parked a pool that keeps failing: it is a readiness matter, with the reason."""
        pool_id = child.removeprefix("pool:")
        if self.health is not None and any(p.pool_id == pool_id for p in self.pools):
            self.health.set_ready(pool_id, False, f"parked: {why}; next start in {delay_s:.0f}s")

    def _on_escalate(self, reason: str | None) -> None:
        self.escalation_reason = reason
        self.escalated.set()
        self._wake.set()

    def _stop_tree(self) -> None:
        if self.root is not None:
            with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                self.root.stop(block=True, timeout=120)
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        self.spawner.close()  # after the tree: no recipe of this executor is left to spawn or wait for
        if self._spares_open:  # threads kept for the next task end now, not after their wait;
            SPARES.let_go()  # one whose job ends later ends then too
            self._spares_open = False
        for pool in self.pools:
            pool.close_http()
        self._wake.close()  # the tree is gone: no setter is left but a signal's (then a no-op)

    def _pool_refs(self, child: str) -> list[pykka.ActorRef[Any]]:
        """The live ``child`` of every pool that has one now."""
        if self.root is None or not self.root.is_alive():
            return []
        refs = []
        try:
            root_dir = self.root.proxy().children_directory.get(timeout=5)
        except (pykka.Timeout, pykka.ActorDeadError):
            return []
        for pool in self.pools:
            sup = root_dir.get(f"pool:{pool.pool_id}")
            try:
                ref = sup.proxy().children_directory.get(timeout=5).get(child) if sup else None
            except (pykka.Timeout, pykka.ActorDeadError):
                continue
            if ref is not None:
                refs.append(ref)
        return refs

    def _tell_pools(self, child: str, message: Any) -> None:
        for ref in self._pool_refs(child):
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                continue

    def _wait_for_outboxes(self, deadline: float) -> None:
        """Give the reporters a moment to deliver the last results (they stay durable anyway)."""
        while any(len(outbox_of(p)) for p in self.pools) and time.monotonic() < deadline:
            time.sleep(POLL_S)

    def _running(self) -> int:
        """Tasks still running in all pools, read from the pools' task books rather than asked
        of the runners: a runner that is slow to answer or restarting (its Tasks run on, to be
        adopted) must not make a drain end early."""
        return sum(pool.tasks.live() for pool in self.pools)
