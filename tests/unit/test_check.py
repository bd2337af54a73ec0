"""``check`` and ``run`` give one verdict for this host: every problem on one line, then exit 2.

The state dir cases are made real: a path under a regular file cannot be created by anyone,
and a read-only bind mount (in a private mount namespace, so nothing leaks to the host)
refuses writes even to root, who passes every permission bit. Without root the same cases
are made with permission bits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.cli.state_dir import inspect_state_dir, prepare_state_dir

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-check-123456"


def env_of(state_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "DATAHUB_GMS_URL": "http://127.0.0.1:9",
        "DATAHUB_GMS_TOKEN": TOKEN,
        "REMOTE_EXECUTOR_STATE_DIR": str(state_dir),
        "REMOTE_EXECUTOR_OBSERVABILITY_PORT": "0",
        **extra,
    }


def cli(*args: str, env: dict[str, str], wrap: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(wrap or []), sys.executable, "-m", "executor", *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )


def assert_config_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and "configuration OK" not in output, output
    assert result.stderr.startswith("remote-executor: invalid configuration in "), output
    for text in expected:
        assert text in result.stderr, output


def test_no_token_is_one_verdict_not_a_warning_and_ok(tmp_path: Path) -> None:
    env = env_of(tmp_path / "state")
    del env["DATAHUB_GMS_TOKEN"]
    result = cli("check", env=env)
    assert_config_error(result, "  - gms.token: no token")
    assert result.stdout == ""


def test_a_mistake_in_the_only_pool_is_reported_once(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "gms: {url: 'http://127.0.0.1:9', token: t}\npools:\n  - id: a\n    max_workers: many\n"
    )
    result = cli("check", "-c", str(config), env=env_of(tmp_path / "state"))
    assert_config_error(result, str(config), "pools[0].max_workers")
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, result.stderr


def test_every_problem_on_its_own_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = env_of(blocker / "state", REMOTE_EXECUTOR_GMS_TOKEN_FILE=str(tmp_path / "missing-token"))
    del env["DATAHUB_GMS_TOKEN"]
    result = cli("check", env=env)
    assert_config_error(
        result,
        f"  - gms.token_file: cannot read {tmp_path / 'missing-token'}: No such file or directory",
        f"  - state_dir: {blocker / 'state'} cannot be created: {blocker} is not a directory",
    )


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_state_dir_under_a_file_is_a_configuration_error(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = cli(command, env=env_of(blocker / "state"))
    assert_config_error(result, f"state_dir: {blocker / 'state'}")
    assert not (blocker / "state").exists()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A directory nobody can write, and the command prefix that makes it so for this user."""
    directory = tmp_path / "locked"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory, []
        directory.chmod(0o755)
        return
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to make a read-only mount as root")
    script = (
        f'mount --bind "{directory}" "{directory}" && '
        f'mount -o remount,bind,ro "{directory}" && exec "$@"'
    )
    yield directory, ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_state_dir_that_is_not_writable_is_a_configuration_error(
    read_only_dir: tuple[Path, list[str]], command: str
) -> None:
    directory, wrap = read_only_dir
    uid = os.geteuid()
    result = cli(command, env=env_of(directory), wrap=wrap)
    why = "read-only file system" if wrap else "permission denied"
    assert_config_error(result, f"state_dir: {directory} is not writable by uid {uid} ({why})")


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_state_dir_that_cannot_be_created_is_a_configuration_error(
    read_only_dir: tuple[Path, list[str]], command: str
) -> None:
    directory, wrap = read_only_dir
    result = cli(command, env=env_of(directory / "state"), wrap=wrap)
    assert_config_error(result, f"state_dir: {directory / 'state'} cannot be created")


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_directory_inside_the_state_dir_that_is_not_writable_is_found(
    read_only_dir: tuple[Path, list[str]], command: str
) -> None:
    directory, wrap = read_only_dir
    result = cli(command, env=env_of(directory.parent), wrap=wrap)
    assert_config_error(result, f"state_dir: {directory} (inside {directory.parent}) is not writable")


def test_check_creates_nothing_and_run_makes_a_private_dir(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    assert inspect_state_dir(state) is None
    assert not (tmp_path / "new").exists()
    assert prepare_state_dir(state) is None
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700
    assert list(state.iterdir()) == []  # the probe file is gone
