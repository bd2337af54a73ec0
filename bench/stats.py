"""Figures of one bench run: samples per (measure, side), their summary, the table and the targets.

A measure has one line per side (``executor``, ``celery``, ``floor``, ...), each with p50 and
p95 over every sample and the spread (max - min of the repeats' own medians), and, for the other
sides, the executor's p50 as a ratio to theirs. Targets (issue 12 point 2) are checks over the
p50s, printed met / not met.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

MIN_REPEATS = 2
"""Repeats a floor needs before a miss of its own can be told from this machine's noise."""


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; a single value is its own quantile."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Figures:
    """Samples by measure and side, in the order measures were first seen."""

    units: dict[str, str] = field(default_factory=dict)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    repeats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    servers: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, side: str, values: list[float] | float, unit: str, server: str = "") -> None:
        """The samples of one repeat; ``server`` names the SQS server the measure used."""
        batch = values if isinstance(values, list) else [values]
        if not batch:
            return
        self.units.setdefault(measure, unit)
        self.samples.setdefault(measure, {}).setdefault(side, []).extend(batch)
        self.repeats.setdefault(measure, {}).setdefault(side, []).append(statistics.median(batch))
        if server:
            self.servers.setdefault(measure, {})[side] = server

    def p50(self, measure: str, side: str = "executor") -> float | None:
        values = self.samples.get(measure, {}).get(side)
        return statistics.median(values) if values else None

    def span(self, measure: str, side: str) -> tuple[float, float] | None:
        """The lowest and highest of the repeats' own medians, or None under two repeats: one
        repeat tells nothing of the noise, so no floor is judged out of reach on it."""
        medians = self.repeats.get(measure, {}).get(side, [])
        return (min(medians), max(medians)) if len(medians) >= MIN_REPEATS else None

    def table(self) -> list[str]:
        """Markdown lines: measure | side | n | p50 | p95 | spread | executor / side."""
        lines = [
            "| measure | side | SQS server | samples | p50 | p95 | spread of repeats | executor / side |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for measure, sides in self.samples.items():
            unit = self.units[measure]
            label = measure
            mine = self.p50(measure)
            for side, values in sides.items():
                p50 = statistics.median(values)
                medians = self.repeats[measure][side]
                server = self.servers.get(measure, {}).get(side, "")
                ratio = f"{mine / p50:.2f}x" if side != "executor" and mine is not None and p50 else ""
                lines.append(
                    f"| {label} | {side} | {server} | {len(values)} | {_fmt(p50, unit)} | "
                    f"{_fmt(percentile(values, 0.95), unit)} | {_fmt(max(medians) - min(medians), unit)} "
                    f"| {ratio} |"
                )
                label = ""
        return lines


def _fmt(value: float, unit: str) -> str:
    if unit in ("%", "wake-ups/s") and abs(value) < 1:
        return f"{value:.2f} {unit}"  # idle CPU: the target is 0.1 %, and 0.04 read as "0.0 %"
    if unit in ("ms", "%", "MB", "MB/s", "tasks/s", "x", "wake-ups/s"):
        return f"{value:.1f} {unit}" if abs(value) < 1000 else f"{value:.0f} {unit}"
    return f"{value:g} {unit}"


@dataclass(frozen=True)
class Target:
    """One target of issue 12 point 2: a sentence and a check that returns (met, what was seen).

    ``floor``, when given, says why a missed target is out of reach on this machine: the figure
    of a floor (what the protocol and its sandbox cost done bare; for output, a bare read of the
    pipe into a file) that misses the target itself by more than the noise (its best repeat
    misses the target, or Celery's worst repeat), and the executor's excess over it; None when
    the floor meets it, misses it only within the noise or was not measured in two repeats: then
    the miss is plain "NOT MET".
    """

    text: str
    check: Callable[[Figures], tuple[bool | None, str]]
    floor: Callable[[Figures], str | None] | None = None

    def line(self, figures: Figures) -> str:
        met, seen = self.check(figures)
        verdict = "not measured" if met is None else "met" if met else "NOT MET"
        reason = self.floor(figures) if met is False and self.floor is not None else None
        if reason:
            verdict = f"NOT MET, out of reach here: {reason}"
        return f"| {self.text} | {seen} | {verdict} |"


def target_table(targets: list[Target], figures: Figures) -> list[str]:
    """Markdown lines: target | measured | verdict."""
    return [
        "| target | measured (p50) | verdict |",
        "|---|---|---|",
        *(target.line(figures) for target in targets),
    ]
