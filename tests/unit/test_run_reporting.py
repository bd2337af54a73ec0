"""What a finished run tells its user: the cause first in every capped report, honest counters,
one task log per attempt, and no log named for a run that never started."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.cli.reports import summary
from executor.datahub import aspects
from executor.pool import outcome
from executor.pool.sandboxing import SandboxLauncher

CAUSE = "Stopped by the sandbox: output 89.7 MiB > limit 50 MiB (output_mb)"


def test_the_cause_survives_the_line_cap_first_in_the_report() -> None:
    log = "\n".join(f"log line {i}" for i in range(50_000))
    old = aspects.result_aspect("FAILURE", 0, 1, f"{CAUSE}\n\n~~~~ Execution Log ~~~~\n{log}", None,
                                "RUN_INGEST", None)
    assert CAUSE not in old["report"], "the old way: the cap cut the cause from the top"
    text = outcome.report_text(f"{CAUSE}\nMeasured: rss 80 MiB.", log)
    report = outcome.terminal_aspect("FAILURE", 0, text, None, "RUN_INGEST")["report"]
    lines = report.splitlines()
    assert lines[0] == CAUSE and lines[1] == "Measured: rss 80 MiB."
    assert len(lines) <= aspects.MAX_REPORT_LINES
    assert lines[3] == outcome.LOG_HEADING and "earlier log lines truncated" in lines[4]
    assert lines[-1] == "log line 49999", "the log's tail is kept"


def test_a_short_report_is_unchanged_by_the_caps() -> None:
    text = outcome.report_text("Succeeded.", "a\nb")
    assert text == f"Succeeded.\n\n{outcome.LOG_HEADING}\na\nb"
    assert outcome.terminal_aspect("SUCCESS", 0, text, None, "RUN_INGEST")["report"] == text


def rest_sink_result(status: str, written: int, pending: int) -> dict[str, Any]:
    report = {"source": {"report": {"events_produced": 12, "failures": []}},
              "sink": {"report": {"total_records_written": written, "pending_requests": pending,
                                  "failures": []}}}
    return {"status": status, "durationMs": 1500, "structuredReport": {"serializedValue": json.dumps(report)}}


def test_summary_counts_what_the_rest_sink_still_had_pending_when_it_reported() -> None:
    # The datahub-rest sink writes its report before waiting for its last batches.
    expected = "SUCCESS in 1.5s (events=12, written=12, failures=0)"
    assert summary(rest_sink_result("SUCCESS", 0, 12)) == expected
    assert summary(rest_sink_result("FAILURE", 3, 9)).endswith("written=3, pending=9, failures=0)")
    assert summary(rest_sink_result("SUCCESS", 12, 0)).endswith("written=12, failures=0)")


def launcher(state: Path, urn: str = "urn:li:dataHubExecutionRequest:abc") -> SandboxLauncher:
    return SandboxLauncher(SimpleNamespace(state_dir=state), urn)  # type: ignore[arg-type]


def test_each_attempt_gets_its_own_task_log(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    first = launcher(tmp_path)._new_log_file()
    assert first == logs / "abc.log"
    first.write_text("the interrupted attempt\n")
    second = launcher(tmp_path)._new_log_file()
    assert second == logs / "abc.attempt-2.log"
    second.write_text("x")
    assert launcher(tmp_path)._new_log_file() == logs / "abc.attempt-3.log"
    assert first.read_text() == "the interrupted attempt\n"


def test_a_run_that_never_started_names_no_log(tmp_path: Path) -> None:
    never = launcher(tmp_path)
    assert never.log_path() is None
    assert never.log_note() == "no task log: the recipe never started"


def _split_report_text(summary_text: str, log: str) -> str:
    """``outcome.report_text`` as it was, on a list of lines (the reference for its cuts)."""
    head = summary_text.splitlines()
    room = max(0, aspects.MAX_REPORT_LINES - len(head) - 3)
    lines = log.splitlines()
    if len(lines) > room:
        dropped = len(lines) - room
        lines = [f"[{dropped} earlier log lines truncated...]", *lines[dropped:]]
    return "\n".join([*head, "", outcome.LOG_HEADING, *lines])


def _split_cap_report(report: str) -> str:
    """``aspects.cap_report`` as it was, on a list of lines."""
    lines, dropped = report.splitlines(), 0
    if len(lines) > aspects.MAX_REPORT_LINES:
        dropped = len(lines) - (aspects.MAX_REPORT_LINES - 1)
        lines = lines[dropped:]
    mark = " [line truncated]"
    capped = [line if len(line) <= 4096 else line[: 4096 - len(mark)] + mark for line in lines]
    if dropped:
        capped.insert(0, f"[{dropped} earlier log lines truncated...]")
    text = "\n".join(capped)
    return text + "\n" if report.endswith("\n") and capped else text


ODD_LINES = st.sampled_from(["", "é", "a\rb", "\x0c", "\u2028", "x" * 4096, "x" * 4097, "y" * 9000])


@given(st.sampled_from([0, 1, 3, 1994, 1996, 1997, 1998, 2000, 2001, 2400]), st.lists(ODD_LINES, max_size=3),
       st.sampled_from(["", "\n", "\n\n"]), st.sampled_from([0, 1, 1996, 1997, 2100]))
@settings(max_examples=120, deadline=None)
def test_reports_cut_without_splitting_equal_the_line_by_line_cut(
    count: int, odd: list[str], end: str, summary_lines: int
) -> None:
    lines = [f"line {i}" for i in range(count)]
    for index, line in enumerate(odd):  # a few odd lines (long, empty, other breaks) spread out
        lines.insert(index * 977 % (len(lines) + 1), line)
    log = "\n".join(lines) + end
    summary_text = "\n".join(f"summary {i}" for i in range(summary_lines))
    report = outcome.report_text(summary_text, log)
    assert report == _split_report_text(summary_text, log)
    assert aspects.cap_report(report) == _split_cap_report(report)
    assert aspects.cap_report(log) == _split_cap_report(log)
