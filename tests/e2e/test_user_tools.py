"""The user tools against a real executor: why a run failed, and a wait that outlives a shutdown.

A stand-in for the datahub CLI (a purpose-written script in a fake bundled venv,
``usertools-bundled``) either fails the way a recipe with a missing input file does, or waits
for a gate file and succeeds. The reports are the executor's own, so these tests also hold the
CLI's reading of a report (``executor.cli.reports``) to what ``executor.pool.task`` writes.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.cli.follow import follow
from executor.cli.ingestion import Submission, submit
from executor.cli.main import main
from executor.datahub.gms import GmsClient
from tests.fixtures.executor import running_executor
from tests.fixtures.fake_venvs import bundled_cli

PLUGIN = "usertools"
RESULT = "dataHubExecutionRequestResult"
STAND_IN = '''
import json, os, sys, time
envelope = json.loads(sys.stdin.read())
config = json.loads(envelope["__recipe_yaml__"])["source"]["config"]
print("[stand-in] INFO  pipeline starting", flush=True)
if config["mode"] == "fail":
    print("Traceback (most recent call last):", file=sys.stderr)
    print('  File "file_source.py", line 40, in get_workunits', file=sys.stderr)
    print("FileNotFoundError: [Errno 2] No such file or directory: 'missing.json'", file=sys.stderr)
    sys.exit(1)
while not os.path.exists(config["gate"]):
    print("[stand-in] waiting for the gate", flush=True)
    time.sleep(0.2)
print("[stand-in] done", flush=True)
'''


@pytest.fixture(scope="module")
def venv_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled_cli(tmp_path_factory.mktemp("usertools-venvs"), PLUGIN, STAND_IN)


@pytest.fixture
def client(control_plane: Any) -> Iterator[GmsClient]:
    with GmsClient(control_plane.gms_url, control_plane.token) as gms:
        yield gms


def recipe(tmp_path: Path, **config: str) -> Path:
    path = tmp_path / f"{config['mode']}.yml"
    content = {"source": {"type": PLUGIN, "config": config}, "sink": {"type": "console"}}
    path.write_text(yaml.safe_dump(content))
    return path


def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_wait_and_status_say_why_a_run_failed(
    control_plane: Any, tmp_path: Path, venv_root: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATAHUB_GMS_URL", control_plane.gms_url)
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", control_plane.token)
    with running_executor(control_plane, tmp_path / "state", venv_root):
        args = ["submit", str(recipe(tmp_path, mode="fail")), "--pool", "default", "--version", "bundled"]
        assert main([*args, "--wait", "--timeout", "120"]) == 1
        captured = capsys.readouterr()
        urn = captured.out.strip()
        cause = captured.err.split("cause:\n", 1)[1].splitlines()
        assert cause == [
            "  Exited with code 1.",
            "  FileNotFoundError: [Errno 2] No such file or directory: 'missing.json'",
        ], captured.err

        assert main(["status", urn]) == 0
        shown = capsys.readouterr().out.splitlines()
        assert "status:    FAILURE" in shown and any(line.startswith("started:") for line in shown)
        assert shown[shown.index("report:") + 1] == "  Exited with code 1."
        assert shown[-1] == "  FileNotFoundError: [Errno 2] No such file or directory: 'missing.json'"

        assert main(["cancel", urn]) == 0
        assert capsys.readouterr().out == f"not cancelled: {urn} had already finished with FAILURE\n"


def test_wait_follows_a_run_across_an_executor_shutdown_to_its_rerun(
    control_plane: Any, client: GmsClient, tmp_path: Path, venv_root: Path
) -> None:
    gate = tmp_path / "gate"
    job = Submission(recipe(tmp_path, mode="gate", gate=str(gate)), "default", version="bundled")
    urn = submit(client, job)
    out, codes = io.StringIO(), []

    def watch() -> None:
        with GmsClient(control_plane.gms_url, control_plane.token) as own:
            codes.append(follow(own, urn, out, poll_s=0.2, timeout_s=240))

    def status() -> str | None:
        return (control_plane.get_aspect(urn, RESULT) or {}).get("status")

    # The watch connects before each executor starts, so its connection's server thread is
    # no thread that the executor's leak check could blame on the executor.
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_for(lambda: "[status]" in out.getvalue(), 30, "the watch to start")
        with running_executor(control_plane, tmp_path / "first", venv_root):
            wait_for(lambda: status() == "RUNNING", 60, "the first run")
        assert status() == "FAILURE"  # interrupted by the shutdown, message released
        with running_executor(control_plane, tmp_path / "second", venv_root):
            wait_for(lambda: status() == "RUNNING", 90, "the rerun")
            gate.write_text("")
            watcher.join(timeout=120)
    finally:
        gate.write_text("")
        watcher.join(timeout=120)
    text = out.getvalue()
    assert codes == [0], text
    assert "FAILURE (interrupted by an executor shutdown; waiting for the rerun)" in text
    assert text.rstrip().splitlines()[-1].startswith("SUCCESS in "), text
