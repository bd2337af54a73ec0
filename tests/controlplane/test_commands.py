"""The command-line tools against a running control plane (GraphQL only), and the server command."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from executor.cli.follow import new_lines
from executor.cli.main import main
from executor.cli.reports import summary
from tests.fixtures.controlplane import graphql

RECIPE = {"source": {"type": "file", "config": {"path": "in.json"}}, "sink": {"type": "console"}}


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders.yml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture
def gms_env(control_plane: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DATAHUB_GMS_URL", control_plane.gms_url)
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", control_plane.token)
    return control_plane


def requests_of(cp: Any) -> list[str]:
    return [u for (u, aspect, _) in cp.list_aspects("dataHubExecutionRequest") if aspect.endswith("Input")]


def finish_when_requested(cp: Any, result: dict[str, Any]) -> threading.Thread:
    """Play the executor: once a request exists, report RUNNING with a log line, then ``result``."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while not requests_of(cp) and time.monotonic() < deadline:
            time.sleep(0.05)
        (urn,) = requests_of(cp)
        cp.aspects.put(urn, "dataHubExecutionRequestResult", {"status": "RUNNING", "report": "starting"})
        cp.aspects.put(urn, "dataHubExecutionRequestResult", result)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_submit_creates_then_updates_the_source_and_prints_the_urn(
    gms_env: Any, recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", str(recipe_file), "--pool", "other", "--version", "bundled"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["submit", str(recipe_file), "--pool", "other"]) == 0
    second = capsys.readouterr().out.strip()
    assert first != second and set(requests_of(gms_env)) == {first, second}

    sources = graphql(
        gms_env,
        "query { listIngestionSources(input: {}) { ingestionSources { name config { executorId } } } }",
    )
    assert sources["listIngestionSources"]["ingestionSources"] == [
        {"name": "orders", "config": {"executorId": "other"}}
    ]
    stored = gms_env.get_aspect(first, "dataHubExecutionRequestInput")
    assert stored["executorId"] == "other" and stored["args"]["version"] == "bundled"
    assert json.loads(stored["args"]["recipe"])["source"] == RECIPE["source"]


@pytest.mark.parametrize(("status", "code"), [("SUCCESS", 0), ("FAILURE", 1), ("CANCELLED", 5)])
def test_submit_wait_follows_the_run_to_its_end(
    gms_env: Any, recipe_file: Path, capsys: pytest.CaptureFixture[str], status: str, code: int
) -> None:
    report = json.dumps(
        {"source": {"report": {"events_produced": 3, "failures": []}}, "sink": {"report": {}}}
    )
    result = {
        "status": status,
        "durationMs": 1500,
        "report": "starting\nline two",
        "structuredReport": {
            "type": "RUN_INGEST",
            "serializedValue": report,
            "contentType": "application/json",
        },
    }
    executor = finish_when_requested(gms_env, result)
    try:
        assert main(["submit", str(recipe_file), "--pool", "default", "--wait", "--timeout", "60"]) == code
    finally:
        executor.join(timeout=30)
    err = capsys.readouterr().err
    assert re.search(rf"^\[status\] \d+:\d\d {status}$", err, re.MULTILINE), err
    assert "line two" in err
    assert f"{status} in 1.5s (events=3, failures=0)" in err


def test_cancel_writes_signals_and_reports_unknown_requests(
    gms_env: Any, recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["submit", str(recipe_file), "--pool", "default"])
    urn = capsys.readouterr().out.strip()
    assert main(["cancel", urn]) == 0
    assert gms_env.get_aspect(urn, "dataHubExecutionRequestSignal")["signal"] == "KILL"
    assert main(["cancel", urn, "urn:li:dataHubExecutionRequest:missing"]) == 1
    assert "no execution request" in capsys.readouterr().err


def test_secret_set_reads_the_value_from_stdin(gms_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("first value\n", "second value\n"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(value))
        assert main(["secret", "set", "API_KEY"]) == 0
    values = graphql(gms_env, 'query { getSecretValues(input: {secrets: ["API_KEY"]}) { value } }')
    assert values["getSecretValues"] == [{"value": "second value"}]


def test_client_commands_fail_clearly_without_gms_or_token(
    control_plane: Any, recipe_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    monkeypatch.delenv("DATAHUB_GMS_TOKEN", raising=False)
    assert main(["submit", str(recipe_file), "--pool", "default"]) == 2
    assert main(["submit", str(recipe_file), "--pool", "default", "--gms", control_plane.gms_url]) == 2
    assert "no token" in capsys.readouterr().err
    token_file = tmp_path / "token"
    token_file.write_text("wrong\n")
    args = ["--gms", control_plane.gms_url, "--token-file", str(token_file)]
    assert main(["submit", str(recipe_file), "--pool", "default", *args]) == 1
    assert "check the token" in capsys.readouterr().err
    (tmp_path / "bad.yml").write_text("sink: {}\n")
    token_file.write_text(control_plane.token)
    assert main(["submit", str(tmp_path / "bad.yml"), "--pool", "default", *args]) == 2
    assert "source.type" in capsys.readouterr().err
    assert main(["submit", str(recipe_file), "--pool", "nope", *args]) == 1
    assert "unknown executorId" in capsys.readouterr().err


def test_client_tokens_are_stripped_and_checked_as_the_executor_checks_its_own(
    gms_env: Any, recipe_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A token exported from a file keeps its newline; a control character cannot go in a header."""
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", gms_env.token + "\n")
    assert main(["submit", str(recipe_file), "--pool", "default"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", "t0k\x07en")
    assert main(["submit", str(recipe_file), "--pool", "default"]) == 2
    err = capsys.readouterr().err
    assert "DATAHUB_GMS_TOKEN" in err and "control or non-ASCII" in err and "t0k" not in err
    token_file = tmp_path / "token"
    token_file.write_text(" \n")
    assert main(["submit", str(recipe_file), "--pool", "default", "--token-file", str(token_file)]) == 2
    assert "no token" in capsys.readouterr().err


def test_controlplane_command_runs_until_sigterm(tmp_path: Path) -> None:
    info_file = tmp_path / "cp.json"
    env = {**os.environ, "REMOTE_EXECUTOR_CONTROLPLANE_TOKEN": "t0ken-from-env"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "executor",
            "controlplane",
            "--pool",
            "a",
            "--pool",
            "b",
            "--info-file",
            str(info_file),
            "--state",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not info_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the info file never appeared"
            time.sleep(0.05)
        info = json.loads(info_file.read_text())
        assert oct(info_file.stat().st_mode & 0o777) == "0o600"
        assert info["token"] == "t0ken-from-env"
        assert sorted(info["pools"]) == ["a", "b"]
        assert requests.get(info["gms_url"] + "/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert f"GMS URL: {info['gms_url']}" in out
    assert not info_file.exists()


def test_new_lines_follows_a_sliding_tail() -> None:
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b"], ["a", "b", "c"]) == ["c"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["x"], ["y"]) == ["y"]
    assert new_lines(["a"], ["a"]) == []


def test_summary_without_a_structured_report() -> None:
    assert summary({"status": "FAILURE"}) == "FAILURE"
    assert summary(
        {"status": "SUCCESS", "durationMs": 2000, "structuredReport": {"serializedValue": "{"}}
    ) == ("SUCCESS in 2.0s")
