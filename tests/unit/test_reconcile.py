"""The fate reconciliation gives a held message that has no live Task and no pending result."""

from __future__ import annotations

from executor.datahub import aspects
from executor.pool import outcome
from executor.pool.reconcile import Fate, decide

INPUT = {aspects.INPUT_ASPECT: {"task": "RUN_INGEST"}}
WINDOW_S = 30.0


def _with_result(result: dict[str, object]) -> dict[str, dict[str, object]]:
    return {**INPUT, aspects.RESULT_ASPECT: result}


def test_a_delivered_terminal_result_means_the_settling_tell_was_lost_delete() -> None:
    done = outcome.terminal_aspect("SUCCESS", outcome.now_ms(), "ok", None, outcome.RUN_INGEST)
    assert decide(_with_result(done), WINDOW_S)[0] is Fate.DELETE


def test_an_interruption_may_run_again_release() -> None:
    report = f"{outcome.INTERRUPTED_MARKER}\nstopped"
    interrupted = outcome.terminal_aspect("FAILURE", outcome.now_ms(), report, None, outcome.RUN_INGEST)
    assert decide(_with_result(interrupted), WINDOW_S)[0] is Fate.RELEASE


def test_nothing_known_is_released_now() -> None:
    fate, reason = decide(dict(INPUT), WINDOW_S)
    assert fate is Fate.RELEASE and "no task" in reason


def test_a_fresh_running_elsewhere_is_released_for_a_lease() -> None:
    running = outcome.running_aspect(outcome.now_ms(), "Starting.")
    assert decide(_with_result(running), WINDOW_S)[0] is Fate.RELEASE_LATER


def test_a_stale_running_is_left_behind_by_a_dead_executor_release_now() -> None:
    running = outcome.running_aspect(outcome.now_ms() - 600_000, "Starting.")
    running["durationMs"] = 0
    assert decide(_with_result(running), WINDOW_S)[0] is Fate.RELEASE


def test_an_unknown_request_is_poison() -> None:
    assert decide({}, WINDOW_S)[0] is Fate.POISON
