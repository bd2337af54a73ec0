"""``submit --wait``: follow an execution request to its final result and say why it ended.

Polls the request and prints new log lines, and a status line (elapsed time and state) at
each change and every ``progress_every_s`` while nothing changes, so a long wait is never
silent. A FAILURE that an executor shutdown left (``INTERRUPTED_MARKER``) is not the end: the
request runs again and the rerun's result replaces it, so the watch goes on. At the end it
prints a summary and, unless the run succeeded, the failure's cause from the report. Polling
errors that may pass (GMS briefly down) are retried with the project's backoff; final ones
end the watch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from executor.backoff import Backoff, RetryState
from executor.cli.ingestion import get_request, is_final, is_interrupted
from executor.cli.progress import Progress
from executor.cli.reports import failure_cause, split_report, summary
from executor.datahub.gms import GmsClient
from executor.errors import RetryableError
from executor.exitcodes import ExitCode

EXIT_BY_STATUS = {"SUCCESS": ExitCode.OK, "TIMEOUT": ExitCode.TIMEOUT, "CANCELLED": ExitCode.CANCELLED}
POLL_BACKOFF = Backoff(min_s=1.0, max_s=10.0)
WAITING = "waiting for an executor"
RERUN = "interrupted by an executor shutdown; waiting for the rerun"


@dataclass
class _Seen:
    """The report lines the watch has shown so far."""

    lines: tuple[str, ...] = ()


def follow(
    client: GmsClient,
    urn: str,
    out: TextIO,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    progress_every_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExitCode:
    """Follow ``urn`` until a final result; print to ``out``; the exit code for its status."""
    retry = RetryState(POLL_BACKOFF)
    progress = Progress(out, "status", progress_every_s, clock)
    deadline = None if timeout_s is None else clock() + timeout_s
    seen = _Seen()
    while deadline is None or clock() < deadline:
        try:
            request = get_request(client, urn)
            retry.succeeded()
        except RetryableError as exc:
            delay = retry.failed(clock())
            progress.say("GMS not answering", f"{exc}; retrying in {delay:.1f}s")
            sleep(delay)
            continue
        result = request.get("result") or {}
        progress.update(_state_of(result))
        _show(result, seen, out)
        if is_final(result):
            return _finish(result, out)
        sleep(poll_s)
    progress.say(f"gave up after {timeout_s:g}s", "the request goes on; see `remote-executor status`")
    return ExitCode.FAILURE


def _show(result: dict[str, Any], seen: _Seen, out: TextIO) -> None:
    """Print the report lines not shown yet."""
    head, log = split_report(result.get("report"))
    if is_interrupted(result):
        lines: list[str] = []
    elif is_final(result) and head:
        lines = head  # the log itself was followed while the run went on
    else:
        lines = log
    for line in new_lines(list(seen.lines), lines):
        out.write(f"  {line}\n")
    seen.lines = tuple(lines)
    out.flush()


def _state_of(result: dict[str, Any]) -> str:
    if is_interrupted(result):
        return f"FAILURE ({RERUN})"
    return str(result.get("status") or WAITING)


def _finish(result: dict[str, Any], out: TextIO) -> ExitCode:
    """The summary line, and for anything but SUCCESS the cause."""
    status = str(result.get("status"))
    out.write(summary(result) + "\n")
    if status != "SUCCESS":
        cause = failure_cause(result.get("report"))
        if cause:
            out.write("cause:\n" + "".join(f"  {line}\n" for line in cause))
    out.flush()
    return EXIT_BY_STATUS.get(status, ExitCode.FAILURE)


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """Lines of ``current`` not yet shown, given the log tail shown last time (a sliding window)."""
    for overlap in range(min(len(previous), len(current)), 0, -1):
        if previous[-overlap:] == current[:overlap]:
            return current[overlap:]
    return current
