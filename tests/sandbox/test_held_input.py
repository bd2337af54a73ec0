"""A run spawned before its secrets resolved (``hold_input``): the recipe waits for its stdin.

The executor pre-starts the recipe while the secrets are fetched. These check the ordering
that makes that safe: no output is read before the input is given, the masker holds every
secret given with the input before a byte of output is read, a run stopped before its input
leaves no process, work dir, cgroup or log behind and never gets the input, and a recipe that
died before its input is reported with its own (masked) output once the input came.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox.cgroups import detect_cgroups
from executor.sandbox.spawner import SpawnServer

from .helpers import marked_processes, py, wait_until

SECRET = "held-input-secret-value-7f3a"
DEADLINE_S = 60.0

EARLY_THEN_ECHO = """
    import json, os, sys
    print("early line before stdin", flush=True)
    open(sys.argv[1], "w").close()  # says: the early line is in the pipe
    envelope = json.loads(sys.stdin.read())
    open(sys.argv[2], "w").close()  # says: the input arrived
    secret = envelope["__secrets__"]["S"]
    import base64
    print("plain", secret, flush=True)
    print("b64", base64.b64encode(secret.encode()).decode(), flush=True)
"""


@pytest.fixture
def held(make_spec: Callable[..., SandboxSpec], tmp_path: Path) -> Callable[..., SandboxSpec]:
    def make(argv: list[str]) -> SandboxSpec:
        return make_spec(argv, hold_input=True, log_file=tmp_path / "logs" / "held.log")
    return make


def _envelope() -> bytes:
    return json.dumps({"__recipe_yaml__": "{}", "__secrets__": {"S": SECRET}}).encode()


def _forms() -> list[str]:
    return [SECRET, base64.b64encode(SECRET.encode()).decode()]


def test_no_output_is_read_before_the_input_and_the_secret_is_masked_from_the_first_byte(
        held: Callable[..., SandboxSpec], tmp_path: Path, spawner: SpawnServer | None) -> None:
    early, arrived = tmp_path / "early", tmp_path / "arrived"
    lines: list[str] = []
    run = SandboxRun(held(py(EARLY_THEN_ECHO, str(early), str(arrived))), on_line=lines.append,
                     spawner=spawner)
    run.start()
    wait_until(early.exists, DEADLINE_S, "the recipe to print its early line")
    assert run.output_bytes == 0 and lines == [] and run.log_tail() == ""
    assert not arrived.exists()  # it waits for its stdin
    run.give_input(_envelope(), [SECRET])
    result = run.wait(DEADLINE_S)
    assert result is not None and result.outcome == "exited" and result.exit_code == 0, result
    assert "early line before stdin" in result.log_text
    assert "plain ********" in result.log_text and "b64 ********" in result.log_text
    log = (tmp_path / "logs" / "held.log").read_text()
    for text in (result.log_text, log, "\n".join(lines)):
        assert not [form for form in _forms() if form in text]


def test_a_run_stopped_before_its_input_leaves_nothing_and_never_gets_it(
        held: Callable[..., SandboxSpec], tmp_path: Path, spawner: SpawnServer | None) -> None:
    early, arrived = tmp_path / "early", tmp_path / "arrived"
    run = SandboxRun(held(py(EARLY_THEN_ECHO, str(early), str(arrived))), spawner=spawner)
    run.start()
    wait_until(early.exists, DEADLINE_S, "the recipe to start and wait for its stdin")
    work_dir, cgroup = run.work_dir, run._place.cgroup  # what must be gone afterwards
    assert work_dir is not None and work_dir.exists()
    run.stop("the secrets could not be resolved", grace_s=0, status="FAILURE")
    run.give_input(_envelope(), [SECRET])  # too late: a stopped run never gets its input
    result = run.wait(DEADLINE_S)
    assert result is not None and result.outcome == "stopped"
    assert not arrived.exists()
    assert marked_processes(work_dir.name) == []
    assert not work_dir.exists()
    assert not (tmp_path / "logs" / "held.log").exists()  # nothing ran: no task log
    if detect_cgroups().active:
        assert cgroup is not None and not [d for d in cgroup.dirs if d.exists()]
    assert SECRET not in result.log_text


def test_a_recipe_that_died_before_its_input_is_reported_once_the_input_came(
        held: Callable[..., SandboxSpec], tmp_path: Path, spawner: SpawnServer | None) -> None:
    half = len(SECRET) // 2  # the secret is made at run time: a value in the argv is refused
    dying = (f"import sys; print('dying early, not ' + {SECRET[:half]!r} + {SECRET[half:]!r}, flush=True);"
             " sys.exit(3)")
    run = SandboxRun(held(py(dying)), spawner=spawner)
    run.start()
    wait_until(lambda: _has_exited(run.pid), 30, "the recipe to exit before its input")
    assert run.wait_result(0) is None  # it exited, but the run waits for the input (or a stop)
    run.give_input(_envelope(), [SECRET, "abc"])
    result = run.wait(DEADLINE_S)
    assert result is not None and result.outcome == "exited" and result.exit_code == 3
    assert "dying early, not ********" in result.log_text and SECRET not in result.log_text
    assert "1 secret value(s) shorter" in result.log_text  # the note counts the secrets given late


def test_a_secret_in_the_command_line_is_refused_with_the_input(
        held: Callable[..., SandboxSpec], tmp_path: Path) -> None:
    arrived = tmp_path / "arrived"
    program = "import sys; sys.stdin.read(); open(sys.argv[2], 'w').close()"
    run = SandboxRun(held(py(program, "ingest", str(arrived))))
    run.start()
    run.give_input(_envelope(), ["ingest-like-secret-" + "x" * 8, str(arrived)])
    result = run.wait(DEADLINE_S)
    assert result is not None and result.outcome == "error"
    assert result.error is not None and "command line" in result.error
    assert not arrived.exists()


def _has_exited(pid: int | None) -> bool:
    """The process is gone or a zombie (its end seen, not yet reaped)."""
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
