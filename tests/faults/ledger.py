"""The ledger of ``simrecipe`` runs, the fake bundled venv that holds it, and ``wait_until``.

Every run of the stand-in CLI appends JSON events (start, child, overlap, term, end) to
``<ledger>/events.jsonl``; ``Ledger`` reads them back to count runs, overlapping runs and the
processes a test must find dead at its end.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIM_PLUGIN = "faultsim"


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, tick_s: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(tick_s)


def make_venv_root(root: Path) -> Path:
    """``<root>/faultsim-bundled`` whose ``bin/datahub`` is ``simrecipe.py``."""
    bin_dir = root / f"{SIM_PLUGIN}-bundled" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    script = bin_dir / "datahub"
    script.write_text(f"#!{sys.executable}\n" + (HERE / "simrecipe.py").read_text())
    script.chmod(0o755)
    return root


class Ledger:
    """The events ``simrecipe`` runs append: who started, overlapped, was stopped, ended."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def events(self, run_id: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        path = self.directory / "events.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows
                if (run_id is None or r["run_id"] == run_id) and (event is None or r["event"] == event)]

    def wait(self, run_id: str, event: str, count: int = 1, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """The first ``count`` ``event`` records of ``run_id``, waiting for them."""
        return list(wait_until(
            lambda: (found := self.events(run_id, event)) and len(found) >= count and found,
            timeout_s, f"{count} {event!r} event(s) of {run_id}",
        ))

    def duplicates(self, run_id: str) -> int:
        """Runs that overlapped a live run, plus runs started after one had ended."""
        rows = self.events(run_id)
        overlaps = sum(1 for r in rows if r["event"] == "overlap")
        ends = [r["t"] for r in rows if r["event"] == "end"]
        late = sum(1 for r in rows if r["event"] == "start" and ends and r["t"] > min(ends))
        return overlaps + late

    def processes(self) -> set[tuple[int, float]]:
        """Every recipe process and grandchild the ledger knows of, with when it was recorded."""
        rows = self.events()
        return {(r["pid"], r["t"]) for r in rows} | {(r["child"], r["t"]) for r in rows if "child" in r}
