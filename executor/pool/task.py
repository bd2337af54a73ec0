"""Task: one execution request, from its input to a terminal result. Temporary, never restarted.

prepare (read the request; skip it if terminal or cancelled; validate) -> admitted: pre-start
the sandbox (venv, work dir, cgroup, the recipe spawned and waiting for its stdin) while the
secrets resolve -> give the recipe its input (progress every few seconds) -> finish (terminal
result to the Reporter). The poller keeps the message invisible meanwhile. If this actor
crashes, its teardown kills the process group and the runner reports FAILURE for the request.

A Task is the pool's, not its runner's: its parent (``taskbook.RunnerLink``) writes what it
tells the runner into the pool's task book before telling whichever runner is up, so a runner
crash neither stops it nor loses its notices; the next runner adopts it. It is stopped from
outside only when its pool stops (``release`` then reports an interruption).

Every request it makes has a deadline: reading GMS is retried ``PREPARE_ATTEMPTS`` times, an
unanswered ``Resolve`` (the resolver crashed or restarted and dropped it) is asked again after
``resolve_deadline_s`` and fails the request naming the cause after the last attempt. A
``Cancel`` ends it in every phase: before the recipe got its input it settles at once (its
teardown kills a pre-started recipe); after, the sandbox is stopped and its exit settles.
Once settled, it ignores whatever is still queued.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

import pykka

from executor.backoff import Backoff, RetryState
from executor.datahub import aspects
from executor.datahub.aspects import ExecutionRequest
from executor.errors import BadInputError, ExecutorError, FinalError
from executor.pool import outcome
from executor.pool.base import PoolActor
from executor.pool.context import PoolContext
from executor.pool.messages import (
    POLLER,
    REPORTER,
    RESOLVER,
    Acknowledge,
    Admitted,
    Cancel,
    Finish,
    FirstRunning,
    Prepare,
    Progress,
    Release,
    Resolve,
    ResolveAgain,
    ResolveTimeout,
    RunRequest,
    SandboxExited,
    SecretsFailed,
    SecretsResolved,
    SendProgress,
    TaskSettled,
    Unrunnable,
    WeightKnown,
)
from executor.pool.reconcile import Fate, decide
from executor.pool.reporter import hand_over_result, has_pending_result
from executor.pool.run_end import terminal_of
from executor.pool.sandboxing import SandboxLauncher
from executor.pool.task_timing import (
    QUIET_PROGRESS_PERIODS,
    first_running_s,
    live_window_s,
    resolve_deadline_s,
)
from executor.sandbox import SandboxResult
from executor.secrets import secret_references
from executor.supervision import ChildContext

PREPARE_ATTEMPTS = 5
ABANDON_WAIT_S = 0.5
"""How long a Task stopped from outside waits for a recipe that may be ending anyway."""
class Task(PoolActor):
    """Runs one request; reports to the pool's runner (parent) and its siblings by name."""

    watched = False

    def __init__(self, ctx: ChildContext, pool: PoolContext, request: RunRequest) -> None:
        super().__init__(ctx, pool)
        self.urn = request.urn
        self.log = self.log.bind(request=request.urn.rsplit(":", 1)[-1])
        self.request: ExecutionRequest | None = None
        self.start_ms = outcome.now_ms()
        self.launcher = SandboxLauncher(pool, self.urn)
        self.cancel: Cancel | None = None
        self.retry = RetryState(Backoff(min_s=1.0, max_s=15.0))
        self._attempts = 0
        self._settled = False
        self._crashed = False
        self._awaiting_admission = False
        self._resolving = 0
        """The attempt number of the ``Resolve`` awaiting its answer; 0 when none is."""
        self._resolve_attempts = 0
        self._last_tail: str | None = None
        self._quiet_periods = 0
        """Progress intervals since the last RUNNING sent with an unchanged tail."""

    def setup(self) -> None:
        self.actor_ref.tell(Prepare())

    def release(self) -> None:
        run = self.launcher.run
        ended = None
        if run is not None and self.launcher.started and not self._settled and not self._crashed:
            # Stopped from outside (its pool stops): a recipe whose exit is on its way gets a
            # moment to be collected, so its result is reported, not run again.
            ended = run.wait_result(ABANDON_WAIT_S)  # known before the clean-up, which may take long
        self.launcher.kill()
        if not self._settled and not self._crashed:
            self._abandoned(ended)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._crashed = True  # the runner reports this request as FAILURE
        super().on_failure(exception_type, exception_value, tb)

    def _abandoned(self, ended: SandboxResult | None) -> None:
        """Stopped from outside before an outcome (its pool stopped): never leave
        the request held. If the recipe had already exited on its own, report its real result;
        if it may have been cut short, report an interruption (FAILURE that a later run may
        overwrite) and release the message; if it never started, just release it."""
        if not self.launcher.started:
            self.ctx.directory.tell(POLLER, Release(self.urn))
            return
        run = self.launcher.run
        result = ended or (run.wait_result(0) if run is not None else None)
        if outcome.ended_by_itself(result) and self.request is not None:
            # The recipe had ended on its own (its exit was on its way here): report that,
            # or the request would run a second time for nothing.
            hand_over_result(self.pool, self.ctx, self._finish_of(result))
            return
        self.log.warning("stopped before the recipe finished; reporting an interruption")
        report = f"{outcome.INTERRUPTED_MARKER}\nThe executor stopped this task before the recipe finished."
        aspect = outcome.terminal_aspect(aspects.FAILURE, self.start_ms, report, None, self._kind)
        hand_over_result(self.pool, self.ctx, Finish(self.urn, aspect, aspects.FAILURE, release=True))

    def handle(self, message: Any) -> Any:
        if self._settled:
            return None  # queued before the stop: the outcome is already handed on
        if isinstance(message, Prepare):
            self._prepare()
        elif isinstance(message, SecretsResolved):
            if self._resolving:
                self._resolving = 0
                self._launch(message.values)
        elif isinstance(message, ResolveAgain):
            self._request_secrets()
        elif isinstance(message, ResolveTimeout):
            self._resolve_timed_out(message.attempt)
        elif isinstance(message, SecretsFailed):
            if self._resolving:
                self._resolving = 0
                self._secrets_failed(message)
        elif isinstance(message, SendProgress):
            self._progress()
        elif isinstance(message, FirstRunning):
            self._first_running()
        elif isinstance(message, Cancel):
            self._cancel(message)
        elif isinstance(message, Admitted):
            self._admitted()
        elif isinstance(message, SandboxExited):
            self._settle(self._finish_of(message.result))
        return None

    # -- prepare ---------------------------------------------------------------------------
    def _prepare(self) -> None:
        if has_pending_result(self.pool, self.urn):
            # Finished before a restart, not yet delivered: the Reporter acknowledges the
            # message (which the poller now holds) once GMS has the result.
            self.log.info("its result waits in the outbox; not running it again")
            self._settle(None)
            return
        wanted = [aspects.INPUT_ASPECT, aspects.RESULT_ASPECT, aspects.SIGNAL_ASPECT]
        try:
            found = self.gms.batch_get_aspects(aspects.EXECUTION_REQUEST_ENTITY, [self.urn], wanted)
        except ExecutorError as exc:
            self._attempts += 1
            if isinstance(exc, FinalError) or self._attempts >= PREPARE_ATTEMPTS:
                self.log.error("cannot read the request from GMS ({}); giving the message back", exc)
                self._settle(None, Release(self.urn))
                return
            self.tell_self_after(self.retry.failed(time.monotonic()), Prepare())
            return
        values = found.get(self.urn, {})
        if not self._may_run(values):
            return
        if aspects.signal_from_aspect(values.get(aspects.SIGNAL_ASPECT)) == "KILL":
            self._report_and_stop(aspects.CANCELLED, "Cancelled by a KILL signal before it started.")
            return
        try:
            self.request = ExecutionRequest.from_aspect(self.urn, values.get(aspects.INPUT_ASPECT))
        except BadInputError as exc:
            self._report_and_stop(aspects.FAILURE, f"Invalid execution request: {exc}")
            return
        if self.request.task not in outcome.SUPPORTED_TASKS:
            self._report_and_stop(
                aspects.FAILURE,
                f"Unknown task {self.request.task!r}: this executor runs "
                f"{' and '.join(outcome.SUPPORTED_TASKS)}.",
            )
            return
        # Accepted at the default weight; admitted (``Admitted``) once this one's fits.
        self._awaiting_admission = True
        self._to_runner(WeightKnown(self.urn, self.request.task_weight(self.pool.pool.max_workers)))
        if self.pool.tasks.is_admitted(self.urn):
            # Admitted at once in the task book (``RunnerLink``): no hop to the runner and back.
            self.actor_ref.tell(Admitted())
        self.launcher.prepare(self.request)  # before the Admitted turn; nothing is spawned before it

    def _admitted(self) -> None:
        """Admission found room for this request's weight (the runner, or this Task's own
        weighing in the task book: ``TaskBook.admit_waiting``): pre-start the recipe (it waits for
        its stdin), then ask for the secrets (after the spawn: the call's CPU does not delay it,
        and it overlaps the recipe's start-up), and report RUNNING once the run has lasted
        ``first_running_s`` (a run that ends sooner reports only its result)."""
        if not self._awaiting_admission:
            return
        self._awaiting_admission = False
        assert self.request is not None
        self.start_ms = outcome.now_ms()  # a request that waited for its slot (prefetched) starts now
        try:
            self.launcher.prestart(self.request, on_exit=self._on_exit)
        except ExecutorError as exc:
            self._report_and_stop(aspects.FAILURE, f"The recipe could not be started: {exc}")
            return
        self._request_secrets()  # may give the recipe its input at once (no secrets)
        if self._settled:
            return
        delay_s = first_running_s(self.pool)
        if delay_s > 0:
            self.tell_self_after(delay_s, FirstRunning())
        else:
            self._first_running()  # the default: at once, not a timer hop behind the mailbox

    def _may_run(self, values: dict[str, dict[str, Any]]) -> bool:
        """False (and the message settled) when GMS says the request must not run here now:
        the reconciliation's rules (``reconcile.decide``), so a Task and the poller agree."""
        fate, reason = decide(values, live_window_s(self.pool))
        if fate is Fate.POISON:
            self.log.debug("{}; not running it", reason)  # the poller warns once
            self._settle(None, Unrunnable(self.urn, reason))
        elif fate is Fate.DELETE:
            self.log.info("{}; not running it again", reason)
            self._settle(None, Acknowledge(self.urn))
        elif fate is Fate.RELEASE_LATER:
            delay = self.pool.pool.visibility_s
            self.log.info("{}; looking again in {}s", reason, delay)
            self._settle(None, Release(self.urn, delay_s=delay))
        return fate is Fate.RELEASE

    def _request_secrets(self) -> None:
        assert self.request is not None
        names = tuple(sorted(secret_references(self.request.recipe_text)))
        if not names:
            self._launch({})
            return
        self._resolve_attempts += 1
        self._resolving = self._resolve_attempts
        if not self.ctx.directory.tell(RESOLVER, Resolve(names, self.actor_ref)):
            self.actor_ref.tell(SecretsFailed("the secret resolver is restarting", retryable=True))
            return
        self.tell_self_after(resolve_deadline_s(self.pool), ResolveTimeout(self._resolving))

    def _resolve_timed_out(self, attempt: int) -> None:
        """The resolver dropped the request (a crash or restart loses its mailbox): ask again."""
        if self._resolving != attempt:
            return  # answered meanwhile, or a later attempt is under way
        self._resolving = 0
        deadline = resolve_deadline_s(self.pool)
        self.log.warning("the secret resolver did not answer within {:.0f}s", deadline)
        error = f"the secret resolver did not answer within {deadline:.0f}s"
        self._secrets_failed(SecretsFailed(error, retryable=True))

    def _secrets_failed(self, message: SecretsFailed) -> None:
        if message.retryable and self._resolve_attempts < PREPARE_ATTEMPTS and self.request is not None:
            self.tell_self_after(self.retry.failed(time.monotonic()), ResolveAgain())
            return
        attempts = f" ({self._resolve_attempts} attempts)" if message.retryable else ""
        self._report_and_stop(
            aspects.FAILURE, f"Secrets could not be resolved, nothing was run: {message.error}{attempts}"
        )

    # -- run -------------------------------------------------------------------------------
    def _launch(self, secrets: dict[str, str]) -> None:
        assert self.request is not None
        if self.cancel is not None:
            self._report_and_stop(self.cancel.status, f"{self.cancel.reason} (before it started)")
            return
        self.launcher.give_secrets(secrets)
        self.log.info("starting {}{}", self.request.task, self.launcher.spare.start_note())
        self.tell_self_after(self.pool.pool.progress_interval_s, SendProgress())

    def _on_exit(self, result: Any) -> None:
        """On the launch thread: hand the outcome to this actor (gone if it was stopped; its
        teardown then reported the result or the interruption)."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(SandboxExited(result))

    def _progress(self) -> None:
        if not self.launcher.running:
            return
        # The first look is one interval after the launch (never before ``running_after_s``),
        # the next ones on the common tick: runs started apart then look together, so the
        # timer thread and the reporters' strand wake once a period for them all. A gap
        # stays under 1.25 intervals, so a quiet run stays live (``task_timing``).
        self.tell_self_on_tick(self.pool.pool.progress_interval_s, SendProgress())
        tail = self.launcher.log_tail()
        if tail == self._last_tail:
            self._quiet_periods += 1
            if self._quiet_periods < QUIET_PROGRESS_PERIODS:
                return  # nothing new to show; the next interval reports it to stay live
        self._last_tail, self._quiet_periods = tail, 0
        self._send_running(tail)

    def _first_running(self) -> None:
        """Admitted (or still running ``first_running_s`` later): RUNNING tells a duplicate's check
        that the request runs here. Not for a run that ended or is being cancelled. The tail is
        not recorded as reported, so the first periodic report goes out whatever it holds: a lost
        first RUNNING (a Reporter restarting drops it) is made good one interval later."""
        if self._settled or self.cancel is not None or not self.launcher.running:
            return
        self._send_running(self.launcher.log_tail() or "Starting.")

    def _send_running(self, tail: str) -> None:
        self.ctx.directory.tell(REPORTER, Progress(self.urn, outcome.running_aspect(self.start_ms, tail)))

    def _cancel(self, message: Cancel) -> None:
        if self.cancel is not None:
            return
        self.cancel = message
        self.log.info("stopping: {}", message.reason)
        if not self.launcher.started:
            # Preparing, awaiting admission or resolving: nothing ran (a pre-started recipe
            # waits for its input; the teardown kills it), so settle now, not after a wait.
            self._awaiting_admission = False
            self._resolving = 0
            if message.interrupted:
                self._settle(None, Release(self.urn))  # another executor may run it
            else:
                self._report_and_stop(message.status, f"{message.reason} (before it started)")
            return
        self.launcher.stop(message.reason, message.status)

    # -- finish ----------------------------------------------------------------------------
    def _finish_of(self, result: Any) -> Finish:
        """The terminal result of a recipe run that ended (on its own or stopped)."""
        assert self.request is not None
        finish = terminal_of(self.urn, result, self.cancel, self.start_ms, self.request.task)
        self.log.info(
            "finished: {} ({}; {})", finish.status, self.launcher.describe(), self.launcher.log_note()
        )
        if self.pool.metrics is not None:
            self.pool.metrics.observe_duration(self.pool.pool_id, (outcome.now_ms() - self.start_ms) / 1000)
        return finish

    def _report_and_stop(self, status: str, message: str) -> None:
        self.log.info("{}: {}", status, message)
        aspect = outcome.terminal_aspect(status, self.start_ms, message, None, self._kind)
        self._settle(Finish(self.urn, aspect, status))

    def _settle(
        self, finish: Finish | None, to_poller: Acknowledge | Release | Unrunnable | None = None
    ) -> None:
        """Hand the outcome on (a result to the Reporter, or the message's fate to the poller),
        tell the runner, and end this actor."""
        self._settled = True
        if finish is not None:
            hand_over_result(self.pool, self.ctx, finish)  # durable before anyone is told
        elif to_poller is not None:
            self.ctx.directory.tell(POLLER, to_poller)
        self._to_runner(TaskSettled(self.urn, finish.status if finish else None))
        self.actor_ref.stop(block=False)

    @property
    def _kind(self) -> str:
        """The request's task kind (``RUN_INGEST`` before the request is read)."""
        return self.request.task if self.request else outcome.RUN_INGEST

    def _to_runner(self, message: WeightKnown | TaskSettled) -> None:
        """Through the parent (``taskbook.RunnerLink``): recorded in the pool's task book, then
        told to the current runner, so a runner that restarts meanwhile adopts it."""
        if self.ctx.parent is not None:
            self.ctx.parent.tell(message)
