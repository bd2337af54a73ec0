"""Isolation of a run: environment, argv, stdin secrets, masking everywhere, work dir, stop, rlimits."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from executor.errors import BadInputError
from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec, build_env
from executor.sandbox.masking import MASK

from .conftest import RunFactory
from .helpers import PY, py, wait_until

SECRET = "fake-db-password/9+Z"
PLANTED = {
    "DATAHUB_GMS_TOKEN": "planted-gms-token-abcdef",
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDPLANTED",
    "AWS_SECRET_ACCESS_KEY": "planted-aws-secret-key",
    "AWS_SESSION_TOKEN": "planted-aws-session-token",
}


def test_environment_has_none_of_the_executor_credentials(run_sandbox: RunFactory, work_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    env = build_env(os.environ, {"POOL_VAR": "pool"}, {"EXTRA_VAR": "extra"}, work_root)
    show = "import json, os; print(json.dumps(dict(os.environ)))"
    _, result = run_sandbox(py(show), env=env)
    child_env = json.loads(next(line for line in result.log_text.splitlines() if line.startswith("{")))
    for name, value in PLANTED.items():
        assert name not in child_env and value not in result.log_text
    assert child_env["POOL_VAR"] == "pool" and child_env["EXTRA_VAR"] == "extra"
    assert child_env["HOME"] == child_env["TMPDIR"][: -len("/tmp")]
    assert child_env["DATAHUB_TELEMETRY_ENABLED"] == "false"


def test_a_secret_in_argv_is_refused(make_spec: Callable[..., SandboxSpec]) -> None:
    with pytest.raises(BadInputError, match="stdin"):
        make_spec([PY, "-c", "pass", f"--password={SECRET}"], secrets=[SECRET])


def test_secrets_travel_on_stdin_only(make_spec: Callable[..., SandboxSpec]) -> None:
    ready = threading.Event()
    seen: list[str] = []
    child = "import sys, time\nsecret = sys.stdin.read()\nprint('got', secret, flush=True)\ntime.sleep(20)"
    sandbox = SandboxRun(make_spec(py(child), stdin=SECRET.encode(), secrets=[SECRET]),
                         on_line=lambda line: (seen.append(line), ready.set()))
    sandbox.start()
    try:
        assert ready.wait(10), "the child never printed"
        assert seen[0] == f"got {MASK}"
        assert sandbox.pid is not None
        proc = psutil.Process(sandbox.pid)
        assert SECRET not in " ".join(proc.cmdline())
        assert SECRET not in json.dumps(proc.environ())
    finally:
        sandbox.stop("test over", grace_s=0)
        assert sandbox.wait(10) is not None


def test_secret_forms_are_masked_in_log_text_log_file_and_report(run_sandbox: RunFactory,
                                                                  tmp_path: Path) -> None:
    forms = [SECRET, base64.b64encode(SECRET.encode()).decode(), quote(SECRET, safe=""),
             json.dumps(SECRET)[1:-1], "xyz" + base64.b64encode(b"ab" + SECRET.encode()).decode()]
    child = """
        import base64, json, sys
        from urllib.parse import quote
        secret = sys.stdin.read()
        print("plain", secret)
        print("basic", base64.b64encode(secret.encode()).decode())
        print("url", quote(secret, safe=""))
        print("embedded", "xyz" + base64.b64encode(b"ab" + secret.encode()).decode())
        with open(sys.argv[1], "w") as report:
            json.dump({"password": secret, "dsn": "postgres://u:" + quote(secret, safe="") + "@h"}, report)
    """
    log_file = tmp_path / "logs" / "task.log"
    log_file.parent.mkdir()
    for i in range(3):
        (log_file.parent / f"old-{i}.log").write_text("an older task")
    _, result = run_sandbox(py(child, "{report_file}"), stdin=SECRET.encode(), secrets=[SECRET],
                            report_file="report.json", log_file=log_file, log_keep_files=1)
    assert len(list(log_file.parent.glob("*.log"))) == 2, "this task's log is kept beyond log_keep_files"
    assert result.outcome == "exited" and result.exit_code == 0
    file_text = log_file.read_text()
    assert result.report_json is not None
    for text in (result.log_text, file_text, result.report_json):
        assert MASK in text
        for form in forms:
            assert form not in text
    assert json.loads(result.report_json)["password"] == MASK


def test_work_dir_is_private_home_and_removed(run_sandbox: RunFactory) -> None:
    child = """
        import os, stat
        print(oct(stat.S_IMODE(os.stat(".").st_mode)), os.getcwd() == os.environ["HOME"])
    """
    sandbox, result = run_sandbox(py(child))
    assert "0o700 True" in result.log_text
    assert sandbox.work_dir is not None and not sandbox.work_dir.exists()


def test_rlimits_are_applied_in_the_child(run_sandbox: RunFactory) -> None:
    child = """
        import resource
        print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        print("core", resource.getrlimit(resource.RLIMIT_CORE)[0])
        print("as", resource.getrlimit(resource.RLIMIT_AS)[0])
    """
    limits = SandboxLimits(open_files=77, address_space_bytes=4 * 2**30, kill_grace_s=1)
    _, result = run_sandbox(py(child), limits=limits)
    assert "nofile 77" in result.log_text and "core 0" in result.log_text
    assert f"as {4 * 2**30}" in result.log_text


def test_stop_gives_a_stopped_result_with_the_reason(make_spec: Callable[..., SandboxSpec]) -> None:
    started = threading.Event()
    child = "import time\nprint('running', flush=True)\ntime.sleep(20)"
    sandbox = SandboxRun(make_spec(py(child)), on_line=lambda line: started.set())
    sandbox.start()
    assert started.wait(10)
    wait_until(lambda: "running" in sandbox.log_tail(), 10, "the line in the tail (the run log's thread)")
    sandbox.stop("KILL signal from GMS")
    result = sandbox.wait(15)
    assert result is not None and result.outcome == "stopped"
    assert result.stop_reason == "KILL signal from GMS" and result.suggested_status == "CANCELLED"
    assert "stop requested: KILL signal from GMS" in result.log_text


def test_stop_escalates_to_sigkill_for_a_process_ignoring_sigterm(
        make_spec: Callable[..., SandboxSpec]) -> None:
    started = threading.Event()
    child = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(20)
    """
    sandbox = SandboxRun(make_spec(py(child)), on_line=lambda line: started.set())
    sandbox.start()
    assert started.wait(10)
    sandbox.stop("executor shutdown", grace_s=0.3, status="FAILURE")
    result = sandbox.wait(15)
    assert result is not None and result.outcome == "stopped" and result.signal == 9
    assert result.suggested_status == "FAILURE"
    assert "grace period over: SIGKILL" in result.log_text


def test_missing_program_is_a_clear_error(run_sandbox: RunFactory, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-datahub")
    _, result = run_sandbox([missing])
    assert result.outcome == "error" and result.error is not None and missing in result.error
    assert result.suggested_status == "FAILURE"
