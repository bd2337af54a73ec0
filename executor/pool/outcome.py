"""Pure helpers of the Task: the command line, the stdin envelope and the terminal result.

Kept apart from the actor so they can be read and unit-tested without threads.
"""

from __future__ import annotations

import json
import time
from typing import Any

from executor.datahub import aspects
from executor.datahub.report_lines import body_end, plain_lines, start_of_last
from executor.sandbox.result import SandboxResult

RUN_INGEST = "RUN_INGEST"
TEST_CONNECTION = "TEST_CONNECTION"
SUPPORTED_TASKS = (RUN_INGEST, TEST_CONNECTION)
INTERRUPTED_MARKER = "[remote-executor] interrupted by executor shutdown"
"""Leads the report of an interruption: such a FAILURE may be run again by any executor."""


def stdin_envelope(recipe_text: str, secrets: dict[str, str]) -> bytes:
    """The JSON envelope the datahub CLI reads on ``-c -``: the recipe and its secrets."""
    return json.dumps({"__recipe_yaml__": recipe_text, "__secrets__": secrets}).encode()


def is_rerunnable(result: dict[str, Any] | None) -> bool:
    """True when the stored result does not forbid running the request (again)."""
    if not aspects.is_terminal(result):
        return True
    assert result is not None
    return result.get("status") == aspects.FAILURE and str(result.get("report", "")).startswith(
        INTERRUPTED_MARKER
    )


def running_elsewhere(result: dict[str, Any] | None, window_s: float, now: int | None = None) -> float | None:
    """Seconds since a RUNNING result was last reported, when that is under ``window_s``.

    A live executor reports RUNNING every few seconds (``startTimeMs + durationMs`` is when it
    last did, by its clock). A fresh one means another executor runs the request right now:
    a duplicate message must not start it a second time. A stale one is what a killed
    executor leaves behind: the request may run again. None when it may run.
    """
    if not isinstance(result, dict) or result.get("status") != aspects.RUNNING:
        return None
    try:
        reported_ms = int(result.get("startTimeMs") or 0) + int(result.get("durationMs") or 0)
    except (TypeError, ValueError):
        return None
    age_s = ((now if now is not None else now_ms()) - reported_ms) / 1000
    return max(0.0, age_s) if age_s < window_s else None


def running_aspect(start_ms: int, report: str) -> dict[str, Any]:
    """A RUNNING update with the (masked) log tail."""
    return aspects.result_aspect(
        aspects.RUNNING, start_ms, _elapsed_ms(start_ms), report, None, RUN_INGEST, None
    )


def terminal_aspect(
    status: str, start_ms: int, report: str, structured: str | None, task: str
) -> dict[str, Any]:
    """The terminal ``dataHubExecutionRequestResult``.

    ``executorInstanceId`` (a DataHub Cloud field) is left out: an open-source GMS validates
    the aspect against its own model, which lacks it and refuses unknown fields.
    """
    return aspects.result_aspect(status, start_ms, _elapsed_ms(start_ms), report, structured, task, None)


LOG_HEADING = "~~~~ Execution Log ~~~~"
"""Separates the report's summary (why the run ended) from the run's own log."""


def report_text(summary: str, log: str) -> str:
    """The summary, then the log cut from the top so that both fit DataHub's line cap.

    ``result_aspect`` keeps only a report's last ``MAX_REPORT_LINES`` lines; cutting the log
    here first means the summary (the status's cause, e.g. the sandbox's limit line) survives
    every cap, first in the report.
    """
    head = summary.splitlines()
    room = max(0, aspects.MAX_REPORT_LINES - len(head) - 3)  # blank line, heading, truncation mark
    if room and plain_lines(log):  # cut without splitting the log into lines (report_lines)
        end = body_end(log)
        start = start_of_last(log, room, end)
        cut = [f"[{log.count(chr(10), 0, start)} earlier log lines truncated...]"] if start else []
        top = "\n".join([*head, "", LOG_HEADING, *cut])
        if start and end == len(log):
            # A str has no view: ``log[start:]`` and then a join would copy the kept log (megabytes)
            # twice; replacing its short cut-off front copies it once.
            return log.replace(log[:start], top + "\n", 1)
        return "\n".join([top, *([log if end == len(log) else log[start:end]] if log else [])])
    lines = log.splitlines()
    if len(lines) > room:
        dropped = len(lines) - room
        lines = [f"[{dropped} earlier log lines truncated...]", *lines[dropped:]]
    return "\n".join([*head, "", LOG_HEADING, *lines])


def task_failure_aspect(message: str, start_ms: int | None = None) -> dict[str, Any]:
    """A FAILURE whose report is just ``message`` (nothing ran, or the executor itself failed)."""
    start = start_ms if start_ms is not None else now_ms()
    return aspects.result_aspect(aspects.FAILURE, start, _elapsed_ms(start), message, None, RUN_INGEST, None)


def now_ms() -> int:
    """Wall-clock milliseconds, as DataHub stores times."""
    return int(time.time() * 1000)


def _elapsed_ms(start_ms: int) -> int:
    return max(0, now_ms() - start_ms)


def ended_by_itself(result: Any) -> bool:
    """True when the run ended on its own (not by our stop, nor by a limit). A recipe that had
    exited when a stop came ended on its own: the monitor says so (``Monitor._stop_requested``)."""
    return isinstance(result, SandboxResult) and result.outcome == "exited"
