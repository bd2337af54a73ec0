"""Reading an execution request's result for people: summary, cause of a failure, log tail.

A terminal report written by this executor is the sandbox's summary (how the run ended, what
it measured), then ``LOG_MARKER``, then the masked head and tail of the run's output
(``executor.pool.task``). Other executors write other reports: every function here works on
any text and just finds less in it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

LOG_MARKER = "~~~~ Execution Log ~~~~"
"""Separates a terminal report's summary from the run's log (as ``executor.pool.task`` writes it)."""
CAUSE_LINES = 3
_ERROR_LINE = re.compile(
    r"(^\s*[\w.]*(Error|Exception|Exit|Interrupt)\b\s*:)"  # the last line of a Python traceback
    r"|(\b(ERROR|CRITICAL|FATAL)\b)"  # a log record's level
    r"|(\b(failed|Failed|FAILED)\b)"
    r"|(\bwith at least \d+ failures?\b)"  # the datahub CLI's last line after a failed pipeline
)
_NOISE = re.compile(r"^\s*(Traceback \(most recent call last\):|File \".*\", line \d+|\^+)\s*$")


def split_report(report: str | None) -> tuple[list[str], list[str]]:
    """``(summary lines, log lines)``; a report without the marker is all log."""
    lines = (report or "").splitlines()
    if LOG_MARKER not in lines:
        return [], lines
    at = lines.index(LOG_MARKER)
    return [line for line in lines[:at] if line.strip()], lines[at + 1 :]


def failure_cause(report: str | None, limit: int = CAUSE_LINES) -> list[str]:
    """The lines that say why a run failed: the sandbox's verdict, then the log's error lines.

    The log's last error lines are taken (a traceback ends with its exception; the datahub CLI
    ends with ``Pipeline finished with at least 1 failures``), in their order, without repeats.
    """
    head, log = split_report(report)
    verdict = [line.strip() for line in head if not line.startswith("Measured:")][:1]
    errors: list[str] = []
    for line in reversed(log):
        text = line.strip()
        if text and _ERROR_LINE.search(text) and not _NOISE.match(text) and text not in errors:
            errors.insert(0, text)
            if len(errors) == limit:
                break
    if not verdict and not errors:
        return [line.strip() for line in log if line.strip()][:1]
    return verdict + errors


def log_tail(report: str | None, count: int) -> list[str]:
    """The last ``count`` lines of the run's log."""
    _, log = split_report(report)
    while log and not log[-1].strip():
        log = log[:-1]
    return log[-count:] if count > 0 else []


def summary(result: dict[str, Any]) -> str:
    """One line: status, duration, and the report's main counters when it has them.

    The datahub CLI writes its report before an async sink has flushed: the records still in
    flight are ``pending_requests``, not unwritten ones.
    """
    text = f"{result.get('status')}"
    if result.get("durationMs") is not None:
        text += f" in {int(result['durationMs']) / 1000:.1f}s"
    structured = (result.get("structuredReport") or {}).get("serializedValue")
    try:
        report = json.loads(structured) if structured else {}
    except ValueError:
        report = {}
    if not isinstance(report, dict) or not report:
        return text
    source = (report.get("source") or {}).get("report") or {}
    sink = (report.get("sink") or {}).get("report") or {}
    written, pending = sink.get("total_records_written"), _number(sink.get("pending_requests"))
    if pending and isinstance(written, int) and result.get("status") == "SUCCESS":
        written, pending = written + pending, 0  # exit 0 means the sink flushed them without failure
    counters = {
        "events": source.get("events_produced"),
        "written": written,
        "pending": pending or None,
        "failures": _count(source.get("failures")) + _count(sink.get("failures")),
    }
    shown = ", ".join(f"{k}={v}" for k, v in counters.items() if v is not None)
    return f"{text} ({shown})"


def format_time_ms(value: object) -> str | None:
    """An epoch-milliseconds value as ``2026-11-27 09:50:17 UTC``; None when absent or invalid."""
    try:
        seconds = int(value) / 1000  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    if seconds <= 0:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _number(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _count(value: object) -> int:
    return len(value) if isinstance(value, list | dict) else 0
