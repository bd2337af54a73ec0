"""The recipe's environment: allowlist, layering, and never the executor's own credentials."""

from __future__ import annotations

from pathlib import Path

from executor.sandbox import build_env

EXECUTOR_ENV = {
    "PATH": "/opt/bin:/usr/bin",
    "LANG": "en_US.UTF-8",
    "HTTPS_PROXY": "http://proxy.internal:3128",
    "NO_PROXY": "localhost",
    "DATAHUB_GMS_TOKEN": "fake-gms-token-0123456789",
    "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE",
    "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-key",
    "AWS_SESSION_TOKEN": "fake-aws-session-token",
    "SOME_EXECUTOR_SETTING": "internal",
    "PIP_INDEX_URL": "http://127.0.0.1:1/simple",
}


def test_only_allowlisted_names_pass_from_the_executor(tmp_path: Path) -> None:
    env = build_env(EXECUTOR_ENV, {}, {}, tmp_path)
    assert env["PATH"] == "/opt/bin:/usr/bin"
    assert env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert env["PIP_INDEX_URL"] == "http://127.0.0.1:1/simple"
    for name in ("DATAHUB_GMS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "SOME_EXECUTOR_SETTING"):
        assert name not in env
    assert env["HOME"] == str(tmp_path)
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["DATAHUB_TELEMETRY_ENABLED"] == "false"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_pool_defaults_then_request_extras_win(tmp_path: Path) -> None:
    env = build_env(EXECUTOR_ENV, {"DATAHUB_TELEMETRY_ENABLED": "false", "POOL_ONLY": "p", "BOTH": "pool"},
                    {"BOTH": "request", "EXECUTOR_TASK_MEMORY_LIMIT": "1073741824"}, tmp_path)
    assert (env["POOL_ONLY"], env["BOTH"]) == ("p", "request")
    assert env["EXECUTOR_TASK_MEMORY_LIMIT"] == "1073741824"


def test_home_loader_and_malformed_names_cannot_be_set(tmp_path: Path) -> None:
    extra = {"LD_PRELOAD": "/tmp/evil.so", "A=B": "x", "TMPDIR": "/"}
    env = build_env(EXECUTOR_ENV, {"HOME": "/root"}, extra, tmp_path)
    assert env["HOME"] == str(tmp_path) and env["TMPDIR"] == str(tmp_path / "tmp")
    assert "LD_PRELOAD" not in env and "A=B" not in env


def test_executor_credentials_never_pass_under_another_name(tmp_path: Path) -> None:
    extra = {"AWS_SECRET_ACCESS_KEY": "fake-aws-secret-key", "OWN_KEY": "request-own-value"}
    env = build_env(EXECUTOR_ENV, {"COPY": "fake-gms-token-0123456789"}, extra, tmp_path)
    assert "COPY" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["OWN_KEY"] == "request-own-value"
    assert not set(env.values()) & {"fake-gms-token-0123456789", "AKIAFAKEFAKEFAKE", "fake-aws-secret-key",
                                     "fake-aws-session-token"}
