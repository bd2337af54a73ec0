"""``remote-executor status URN``: one execution request, described for a person.

Status, timings, the report's summary, the cause of a failure and the log's tail, read
through DataHub's GraphQL API: a request can be looked up later, from any host, without the
executor host's task log.
"""

from __future__ import annotations

from typing import Any

from executor.cli.follow import RERUN, WAITING
from executor.cli.ingestion import is_final, is_interrupted
from executor.cli.reports import failure_cause, format_time_ms, log_tail, split_report, summary

LABEL_WIDTH = 10


def describe(request: dict[str, Any], tail: int) -> list[str]:
    """The lines ``status`` prints for ``request`` (as ``get_request`` returns it)."""
    result = request.get("result") or {}
    lines = [str(request.get("urn"))]
    lines += _fields(request, result)
    head, _ = split_report(result.get("report"))
    if head:
        lines.append("report:")
        lines += [f"  {line}" for line in head]
    if is_final(result) and result.get("status") != "SUCCESS":
        shown_above = {line.strip() for line in head}
        cause = [line for line in failure_cause(result.get("report")) if line not in shown_above]
        if cause:
            lines.append("cause:")
            lines += [f"  {line}" for line in cause]
    shown = log_tail(result.get("report"), tail)
    if shown:
        lines.append(f"log (last {len(shown)} lines):")
        lines += [f"  {line}" for line in shown]
    return lines


def _fields(request: dict[str, Any], result: dict[str, Any]) -> list[str]:
    given = request.get("input") or {}
    source = given.get("source") or {}
    status = result.get("status")
    if is_interrupted(result):
        status = f"FAILURE ({RERUN})"
    elif not status:
        status = f"{WAITING} (no result yet)"
    elif not is_final(result):
        status = f"{status} (not finished)"
    duration = result.get("durationMs")
    fields = {
        "status": status,
        "task": given.get("task"),
        "source": source.get("ingestionSource") or source.get("type"),
        "requested": format_time_ms(given.get("requestedAt")),
        "started": format_time_ms(result.get("startTimeMs")),
        "duration": None if duration is None else f"{int(duration) / 1000:.1f}s",
        "summary": summary(result) if is_final(result) else None,
    }
    return [f"{name + ':':<{LABEL_WIDTH}} {value}" for name, value in fields.items() if value]
