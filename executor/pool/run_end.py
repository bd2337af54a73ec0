"""How a launched request ended, in the words of its terminal result.

A launch ends in one of three ways: the sandbox ran the recipe (``SandboxResult``), the recipe
never started (``LaunchFailed``), or a stop came before the spawn (``LaunchStopped``). This
module turns each into the status, report and aspect the Task hands to the Reporter; which
of them the launcher produced is ``sandboxing``'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from executor.pool import outcome
from executor.pool.messages import Cancel, Finish
from executor.sandbox import SandboxResult
from executor.sandbox.result import format_measurements


@dataclass(frozen=True)
class LaunchFailed:
    """The recipe never started: no venv, a policy refusal, a bad request."""

    error: str


@dataclass(frozen=True)
class LaunchStopped:
    """A stop (cancel, KILL, the Task's end) came before the recipe was spawned: nothing ran."""

    reason: str
    status: str


def terminal_of(urn: str, result: Any, cancel: Cancel | None, start_ms: int, task: str) -> Finish:
    """The terminal result of a recipe run that ended (on its own or stopped); ``release`` when
    our stop interrupted it (its message then goes back to the queue)."""
    status, summary = describe_result(result, cancel)
    # An interruption only if our stop ended it: a recipe that exited on its own is done.
    interrupted = bool(cancel and cancel.interrupted and not outcome.ended_by_itself(result))
    report = f"{outcome.INTERRUPTED_MARKER}\n{summary}" if interrupted else summary
    text = outcome.report_text(report, _final_log(result))
    aspect = outcome.terminal_aspect(status, start_ms, text, _structured_report(result), task)
    return Finish(urn, aspect, status, release=interrupted)


def describe_result(result: Any, cancel: Cancel | None) -> tuple[str, str]:
    """The terminal status and the summary lines for the report."""
    if isinstance(result, LaunchFailed):
        return "FAILURE", f"The recipe could not be started: {result.error}"
    if isinstance(result, LaunchStopped):
        status = cancel.status if cancel is not None else result.status
        return status, f"Stopped before the recipe started ({result.reason}); nothing was run."
    assert isinstance(result, SandboxResult)
    status = result.suggested_status
    if result.outcome == "stopped" and cancel is not None:
        status = cancel.status
    return status, f"{result.summary()}\nMeasured: {format_measurements(result)}."


def _final_log(result: Any) -> str:
    """The masked head and tail of the run's output."""
    return result.log_text if isinstance(result, SandboxResult) else ""


def _structured_report(result: Any) -> str | None:
    """The masked ``--report-to`` file, when the CLI wrote one."""
    return result.report_json if isinstance(result, SandboxResult) else None
