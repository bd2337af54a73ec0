"""What the user tools print: progress lines, the cause of a failure, the log tail, the summary."""

from __future__ import annotations

import io

from executor.cli.progress import Progress, format_elapsed
from executor.cli.reports import LOG_MARKER, failure_cause, log_tail, split_report, summary


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_speaks_on_change_and_every_interval_while_unchanged() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "wait", every_s=10, clock=clock)
    for step, state in [(0, "PENDING"), (3, "PENDING"), (4, "RUNNING"), (9, "RUNNING"), (14, "RUNNING")]:
        clock.now = 100.0 + step
        progress.update(state)
    assert out.getvalue().splitlines() == [
        "[wait] 0:00 PENDING", "[wait] 0:04 RUNNING", "[wait] 0:14 RUNNING"
    ]


def test_elapsed_time_reads_as_clock_time() -> None:
    assert [format_elapsed(s) for s in (0, 7.9, 75, 3723, -1)] == ["0:00", "0:07", "1:15", "1:02:03", "0:00"]


def test_the_cause_is_the_sandbox_verdict_then_the_last_error_lines() -> None:
    report = "\n".join(
        [
            "Stopped by the sandbox: output 89.7 MiB > limit 50 MiB; the process tree was killed.",
            "Measured: peak memory 1 GiB, cpu 3 s, 2 processes, output 89.7 MiB, wall 10 s.",
            "",
            LOG_MARKER,
            "ERROR first complaint",
            "line",
            "Traceback (most recent call last):",
            '  File "x.py", line 3, in f',
            "KeyError: 'table'",
            "ERROR first complaint",
            "done",
        ]
    )
    assert failure_cause(report) == [
        "Stopped by the sandbox: output 89.7 MiB > limit 50 MiB; the process tree was killed.",
        "KeyError: 'table'",
        "ERROR first complaint",
    ]


def test_a_report_of_another_executor_still_yields_a_cause() -> None:
    assert failure_cause("Failed to configure the source (mysql): bad host\nmore") == [
        "Failed to configure the source (mysql): bad host"
    ]
    assert failure_cause("The recipe could not be started: no bundled venv") == [
        "The recipe could not be started: no bundled venv"
    ]
    assert failure_cause("") == []
    assert failure_cause(None) == []


def test_split_and_tail() -> None:
    report = f"Exited with code 0 (success).\n\n{LOG_MARKER}\na\nb\nc\n\n"
    assert split_report(report) == (["Exited with code 0 (success)."], ["a", "b", "c", ""])
    assert log_tail(report, 2) == ["b", "c"]
    assert log_tail(report, 0) == []
    assert split_report("just a log") == ([], ["just a log"])


def test_summary_with_and_without_a_structured_report() -> None:
    assert summary({"status": "FAILURE"}) == "FAILURE"
    broken = {"status": "SUCCESS", "durationMs": 2000, "structuredReport": {"serializedValue": "{"}}
    assert summary(broken) == "SUCCESS in 2.0s"
    structured = (
        '{"source": {"report": {"events_produced": 3, "failures": {"x": 1}}}, "sink": {"report": {}}}'
    )
    assert summary({"status": "FAILURE", "structuredReport": {"serializedValue": structured}}) == (
        "FAILURE (events=3, failures=1)"
    )


def test_records_an_async_sink_had_in_flight_count_as_written_after_a_success() -> None:
    structured = (
        '{"source": {"report": {"events_produced": 12}}, '
        '"sink": {"report": {"total_records_written": 0, "pending_requests": 12}}}'
    )
    result = {"status": "SUCCESS", "structuredReport": {"serializedValue": structured}}
    assert summary(result) == "SUCCESS (events=12, written=12, failures=0)"
    failed = {**result, "status": "FAILURE"}
    assert summary(failed) == "FAILURE (events=12, written=0, pending=12, failures=0)"
