"""``submit --wait``, ``status`` and ``cancel`` read a request's result as a person needs it.

The control plane is real (GraphQL over HTTP, through the executor's ``GmsClient``); the test
plays the executor by writing result aspects, one step each time the watch would sleep, so
every state is seen exactly once and no thread or timing is involved.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.cli.follow import follow
from executor.cli.ingestion import Submission, submit
from executor.cli.main import main
from executor.datahub.gms import GmsClient
from executor.pool.outcome import INTERRUPTED_MARKER
from tests.controlplane.test_commands import finish_when_requested

RESULT = "dataHubExecutionRequestResult"
RECIPE = {"source": {"type": "file", "config": {"path": "in.json"}}, "sink": {"type": "console"}}
FAILED_REPORT = "\n".join(
    [
        "Exited with code 1.",
        "Measured: peak memory 40 MiB, cpu 0.5 s, 1 processes, output 1 KiB, wall 1.2 s.",
        "",
        "~~~~ Execution Log ~~~~",
        "[2026-11-27 10:00:00] INFO  starting the pipeline",
        "Traceback (most recent call last):",
        '  File "/venv/lib/datahub/ingestion/source/file.py", line 12, in read',
        "    open(path)",
        "FileNotFoundError: [Errno 2] No such file or directory: 'in.json'",
        "Pipeline finished with at least 1 failures",
    ]
)


@pytest.fixture
def client(control_plane: Any) -> Iterator[GmsClient]:
    with GmsClient(control_plane.gms_url, control_plane.token) as gms:
        yield gms


@pytest.fixture
def urn(control_plane: Any, client: GmsClient, tmp_path: Path) -> str:
    recipe = tmp_path / "orders.yml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    return submit(client, Submission(recipe, "default"))


@pytest.fixture
def gms_env(control_plane: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DATAHUB_GMS_URL", control_plane.gms_url)
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", control_plane.token)
    return control_plane


class Script:
    """Writes the next result each time the watch sleeps; fails if the watch outlives the script."""

    def __init__(self, cp: Any, urn: str, results: list[dict[str, Any]]) -> None:
        self.cp, self.urn, self.results = cp, urn, list(results)
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 4.0)
        assert self.results, "the watch went on after the last result"
        self.cp.aspects.put(self.urn, RESULT, self.results.pop(0))

    def clock(self) -> float:
        return self.now


def running(log: str) -> dict[str, Any]:
    return {"status": "RUNNING", "startTimeMs": 1_764_237_600_000, "durationMs": 2000, "report": log}


def test_wait_follows_an_interrupted_run_to_the_result_of_its_rerun(
    control_plane: Any, client: GmsClient, urn: str
) -> None:
    interrupted = {
        "status": "FAILURE",
        "durationMs": 3000,
        "report": f"{INTERRUPTED_MARKER}\nThe executor stopped this task before the recipe finished.",
    }
    success = {"status": "SUCCESS", "durationMs": 5000, "report": "Exited with code 0 (success)."}
    script = Script(control_plane, urn, [running("first try"), interrupted, running("second try"), success])
    out = io.StringIO()

    code = follow(client, urn, out, poll_s=0, clock=script.clock, sleep=script.sleep)

    text = out.getvalue()
    assert code == 0, text
    assert "[status] 0:08 FAILURE (interrupted by an executor shutdown; waiting for the rerun)" in text
    assert text.index("first try") < text.index("waiting for the rerun") < text.index("second try")
    assert "[status] 0:16 SUCCESS" in text and "SUCCESS in 5.0s" in text
    assert "cause:" not in text


def test_wait_prints_why_a_run_failed(control_plane: Any, client: GmsClient, urn: str) -> None:
    failed = {"status": "FAILURE", "durationMs": 1200, "report": FAILED_REPORT}
    script = Script(control_plane, urn, [running("starting"), failed])
    out = io.StringIO()

    assert follow(client, urn, out, poll_s=0, clock=script.clock, sleep=script.sleep) == 1

    cause = out.getvalue().split("cause:\n", 1)[1].splitlines()
    assert cause == [
        "  Exited with code 1.",
        "  FileNotFoundError: [Errno 2] No such file or directory: 'in.json'",
        "  Pipeline finished with at least 1 failures",
    ]


def test_a_long_wait_shows_elapsed_time_and_state(control_plane: Any, client: GmsClient, urn: str) -> None:
    same = running("still going")
    done = {"status": "SUCCESS", "durationMs": 40_000}
    script = Script(control_plane, urn, [same, same, same, same, same, same, done])
    out = io.StringIO()

    follow(client, urn, out, poll_s=0, progress_every_s=10, clock=script.clock, sleep=script.sleep)

    progress = [line for line in out.getvalue().splitlines() if line.startswith("[status]")]
    assert progress == [
        "[status] 0:00 waiting for an executor",
        "[status] 0:04 RUNNING",
        "[status] 0:16 RUNNING",  # nothing changed for 10 s or more: still says where it is
        "[status] 0:28 SUCCESS",
    ]


def test_wait_through_the_command_prints_the_cause_of_a_timeout(
    gms_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "orders.yml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    timeout = {"status": "TIMEOUT", "durationMs": 9000, "report": "Stopped by the sandbox: wall time"}
    executor = finish_when_requested(gms_env, timeout)
    try:
        assert main(["submit", str(recipe), "--pool", "default", "--wait", "--timeout", "60"]) == 4
    finally:
        executor.join(timeout=30)
    err = capsys.readouterr().err
    assert "TIMEOUT in 9.0s" in err and "cause:\n  Stopped by the sandbox: wall time" in err


def test_status_describes_a_request_by_urn_or_id(
    gms_env: Any, urn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", urn]) == 0
    assert "status:    waiting for an executor (no result yet)" in capsys.readouterr().out

    gms_env.aspects.put(
        urn, RESULT, {"status": "FAILURE", "startTimeMs": 1_764_237_600_000, "durationMs": 1200,
                      "report": FAILED_REPORT},
    )
    assert main(["status", urn.rsplit(":", 1)[-1], "--lines", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == urn
    assert "status:    FAILURE" in out
    assert "started:   2025-11-27 10:00:00 UTC" in out and "duration:  1.2s" in out
    assert out[out.index("report:") + 1] == "  Exited with code 1."
    assert "  FileNotFoundError: [Errno 2] No such file or directory: 'in.json'" in out
    assert out[-3:] == [
        "log (last 2 lines):",
        "  FileNotFoundError: [Errno 2] No such file or directory: 'in.json'",
        "  Pipeline finished with at least 1 failures",
    ]


def test_status_of_an_unknown_request_fails_clearly(gms_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "urn:li:dataHubExecutionRequest:missing"]) == 1
    assert "no execution request urn:li:dataHubExecutionRequest:missing" in capsys.readouterr().err
    assert main(["status", "urn:li:dataset:(x)"]) == 1
    assert "not an execution request URN" in capsys.readouterr().err


def test_cancel_after_the_end_says_so_and_writes_no_signal(
    gms_env: Any, urn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gms_env.aspects.put(urn, RESULT, {"status": "SUCCESS", "durationMs": 10})
    assert main(["cancel", urn]) == 0
    assert capsys.readouterr().out == f"not cancelled: {urn} had already finished with SUCCESS\n"
    assert gms_env.get_aspect(urn, "dataHubExecutionRequestSignal") is None


def test_cancel_of_an_interrupted_request_stops_its_rerun(
    gms_env: Any, urn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gms_env.aspects.put(urn, RESULT, {"status": "FAILURE", "report": f"{INTERRUPTED_MARKER}\n..."})
    assert main(["cancel", urn]) == 0
    assert capsys.readouterr().out == f"cancel requested: {urn}\n"
    assert gms_env.get_aspect(urn, "dataHubExecutionRequestSignal")["signal"] == "KILL"
