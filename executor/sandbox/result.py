"""What a finished run tells its caller: ``SandboxResult``, ``LimitBreach`` and exit-code help.

The Task actor maps a result to DataHub's terminal status with ``suggested_status`` and puts
``summary()`` at the top of the report, so that "memory 2.1 GiB > limit 2 GiB" or "killed by
SIGKILL: likely out of memory" is the first thing a user reads.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass
from typing import Literal

from executor.sandbox.limits import format_bytes, format_seconds

Outcome = Literal["exited", "limit", "stopped", "error"]
LimitName = Literal["memory", "cpu", "wall_time", "processes", "output", "disk"]

_LABELS: dict[str, str] = {
    "memory": "memory", "cpu": "cpu", "wall_time": "wall time", "processes": "processes",
    "output": "output", "disk": "disk",
}
_BYTE_LIMITS = frozenset({"memory", "output", "disk"})
_SECOND_LIMITS = frozenset({"cpu", "wall_time"})


@dataclass(frozen=True)
class LimitBreach:
    """Which limit was hit, by how much, and the sentence that says so."""

    limit: LimitName
    measured: float
    allowed: float
    message: str

    @classmethod
    def of(cls, limit: LimitName, measured: float, allowed: float, note: str = "") -> LimitBreach:
        """A breach with its message, e.g. ``memory 2.1 GiB > limit 2 GiB``."""
        shown, cap = _pair(limit, measured, allowed)
        relation = ">" if measured > allowed else ">="
        text = f"{_LABELS[limit]} {shown} {relation} limit {cap}"
        return cls(limit, measured, allowed, f"{text} ({note})" if note else text)


def _pair(limit: str, measured: float, allowed: float) -> tuple[str, str]:
    """Both values formatted with enough decimals that they differ when they do."""
    for decimals in (1, 3):
        if limit in _BYTE_LIMITS:
            shown, cap = format_bytes(measured, decimals), format_bytes(allowed, decimals)
        elif limit in _SECOND_LIMITS:
            shown, cap = format_seconds(measured, decimals), format_seconds(allowed, decimals)
        else:
            shown, cap = str(int(measured)), str(int(allowed))
        if shown != cap:
            break
    return shown, cap


@dataclass(frozen=True)
class SandboxResult:
    """The end of one run: how it ended, the measurements, the masked log and report."""

    outcome: Outcome
    exit_code: int | None
    signal: int | None
    breach: LimitBreach | None
    stop_reason: str | None
    duration_s: float
    peak_rss_bytes: int
    cpu_seconds: float
    max_processes: int
    output_bytes: int
    log_text: str
    report_json: str | None = None
    error: str | None = None
    stop_status: str | None = None

    @classmethod
    def not_run(cls, error: str, duration_s: float, log_text: str) -> SandboxResult:
        """A run that ended before (or without) its process: nothing was measured."""
        return cls(outcome="error", exit_code=None, signal=None, breach=None, stop_reason=None,
                   duration_s=duration_s, peak_rss_bytes=0, cpu_seconds=0.0, max_processes=0,
                   output_bytes=0, log_text=log_text, error=error)

    @property
    def suggested_status(self) -> str:
        """DataHub's terminal status for this outcome (SUCCESS, FAILURE, TIMEOUT, CANCELLED...)."""
        if self.outcome == "exited":
            return "SUCCESS" if self.exit_code == 0 else "FAILURE"
        if self.outcome == "limit":
            return "TIMEOUT" if self.breach is not None and self.breach.limit == "wall_time" else "FAILURE"
        if self.outcome == "stopped":
            return self.stop_status or "CANCELLED"
        return "FAILURE"

    def summary(self) -> str:
        """One line for the top of the report."""
        if self.outcome == "limit" and self.breach is not None:
            return f"Stopped by the sandbox: {self.breach.message}; the process tree was killed."
        if self.outcome == "stopped":
            return f"Stopped: {self.stop_reason or 'cancelled'}."
        if self.outcome == "error":
            return f"Could not run: {self.error or 'unknown error'}"
        return describe_exit(self.exit_code, self.signal)


def describe_exit(exit_code: int | None, signal: int | None) -> str:
    """Plain words for an exit status; death by SIGKILL or exit 137 is most likely out of memory."""
    if signal is not None:
        name = _signal_name(signal)
        if signal == _signal.SIGKILL:
            return (f"Killed by {name}: most likely out of memory (the kernel's OOM killer); "
                    "raise the memory limit or reduce the recipe's batch sizes.")
        return f"Killed by signal {name}."
    if exit_code == 0:
        return "Exited with code 0 (success)."
    if exit_code == 137:
        return ("Exited with code 137 (128 + SIGKILL): most likely out of memory "
                "(the kernel's OOM killer).")
    if exit_code is not None and exit_code > 128 and exit_code - 128 < 65:
        return f"Exited with code {exit_code} (128 + {_signal_name(exit_code - 128)})."
    return f"Exited with code {exit_code}."


def _signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def format_measurements(result: SandboxResult) -> str:
    """``peak memory 120 MiB, cpu 3.2 s, 4 processes, output 1.2 MiB, 5.1 s``: for the report."""
    return (f"peak memory {format_bytes(result.peak_rss_bytes)}, cpu {format_seconds(result.cpu_seconds)}, "
            f"{result.max_processes} processes, output {format_bytes(result.output_bytes)}, "
            f"wall {format_seconds(result.duration_s)}")
