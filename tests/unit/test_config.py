"""Configuration: files, env vars, precedence, and errors that name the file and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from executor.config import load_config
from executor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config").glob("*.yaml")) + sorted((ROOT / "config").glob("*.env"))
ENV = {"DATAHUB_GMS_URL": "http://127.0.0.1:9", "DATAHUB_GMS_TOKEN": "tok-123456"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_env_vars_alone_form_a_one_pool_config() -> None:
    env = {
        **ENV,
        "DATAHUB_EXECUTOR_WORKER_ID": "legacy-pool",
        "DATAHUB_EXECUTOR_INGESTION_MAX_WORKERS": "7",
        "DATAHUB_EXECUTOR_INGESTION_SIGNAL_POLL_INTERVAL": "3",
        "DATAHUB_EXECUTOR_FILE_SECRET_BASEDIR": "/s",
        "DATAHUB_BUNDLED_VENV_PATH": "/v",
        "INGESTION_DEPENDENCY_RESOLUTION_ENABLED": "false",
        "REMOTE_EXECUTOR_STATE_DIR": "/state",
    }
    config = load_config(None, env)
    (pool,) = config.pools
    assert pool.id == "legacy-pool" and pool.max_workers == 7 and pool.signal_poll_interval_s == 3
    assert str(pool.secrets.file_dir) == "/s" and str(pool.venvs.bundled_root) == "/v"
    assert pool.venvs.dependency_resolution is False
    assert str(config.state_dir) == "/state"
    assert config.gms.resolved_token() == "tok-123456"


def test_pool_id_prefers_the_current_name_over_the_legacy_one() -> None:
    config = load_config(
        None, {**ENV, "DATAHUB_EXECUTOR_POOL_ID": "new", "DATAHUB_EXECUTOR_WORKER_ID": "old"}
    )
    assert config.pools[0].id == "new"


def test_env_overrides_the_file_and_references_expand(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gms: {url: 'http://file:1', token: '${MY_TOKEN}'}\n"
        "pools: [{id: a, max_workers: 2}, {id: b}]\nstate_dir: ${STATE:-/default}\n",
    )
    config = load_config(
        path,
        {"MY_TOKEN": "t1", "DATAHUB_GMS_URL": "http://env:2", "DATAHUB_EXECUTOR_INGESTION_MAX_WORKERS": "5"},
    )
    assert config.gms.url == "http://env:2"
    assert [p.max_workers for p in config.pools] == [5, 5]
    assert str(config.state_dir) == "/default"


def test_wrong_type_names_file_and_field_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gms: {url: 'http://x:1', token: t}\npools:\n - id: a\n - id: b\n   limits: {memory_mb: lots}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    message = str(info.value)
    assert str(path) in message and "pools[1].limits.memory_mb" in message and "integer" in message


def test_unknown_field_and_missing_reference_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pools\[0\]\.max_wokers"):
        load_config(
            write(tmp_path, "gms: {url: 'http://x:1', token: t}\npools: [{id: a, max_wokers: 2}]\n"), {}
        )
    with pytest.raises(ConfigError, match=r"gms\.token: references \$\{NOPE\}"):
        load_config(write(tmp_path, "gms: {url: 'http://x:1', token: '${NOPE}'}\npools: [{id: a}]\n"), {})


def test_duplicate_pools_and_unknown_secret_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repeated: a"):
        load_config(write(tmp_path, "gms: {url: 'http://x:1', token: t}\npools: [{id: a}, {id: a}]\n"), {})
    with pytest.raises(ConfigError, match="unknown secret store 'vault'"):
        load_config(
            write(
                tmp_path,
                "gms: {url: 'http://x:1', token: t}\npools: [{id: a, secrets: {stores: [env, vault]}}]\n",
            ),
            {},
        )


def test_a_first_running_later_than_a_progress_interval_is_refused_by_name(tmp_path: Path) -> None:
    base = ("gms: {url: 'http://x:1', token: t}\n"
            "pools: [{id: a, progress_interval_s: 5, running_after_s: %s}]\n")
    with pytest.raises(ConfigError, match=r"pools\[0\]\.running_after_s.*progress_interval_s \(5\)") as info:
        load_config(write(tmp_path, base % 6), {})
    assert str(tmp_path) in str(info.value)
    assert load_config(write(tmp_path, base % 5), {}).pools[0].running_after_s == 5


def test_the_warm_spare_is_on_unless_turned_off_and_a_bad_value_is_refused_by_name(tmp_path: Path) -> None:
    base = "gms: {url: 'http://x:1', token: t}\npools: [{id: a%s}]\n"
    assert load_config(write(tmp_path, base % ""), {}).pools[0].warm_spare is True
    assert load_config(write(tmp_path, base % ", warm_spare: false"), {}).pools[0].warm_spare is False
    with pytest.raises(ConfigError, match=r"pools\[0\]\.warm_spare") as info:
        load_config(write(tmp_path, base % ", warm_spare: sometimes"), {})
    assert str(tmp_path) in str(info.value)


def test_token_never_shows_and_token_file_is_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret-token-value\n")
    path = write(tmp_path, f"gms: {{url: 'http://x:1', token_file: '{token_file}'}}\npools: [{{id: a}}]\n")
    config = load_config(path, {})
    assert config.gms.resolved_token() == "secret-token-value"
    config = load_config(None, ENV)
    assert "tok-123456" not in repr(config) and "tok-123456" not in str(config.masked())


def test_a_token_from_a_secret_with_a_trailing_newline_is_stripped() -> None:
    """A Kubernetes secret mounted as DATAHUB_GMS_TOKEN often ends in a newline."""
    config = load_config(None, {**ENV, "DATAHUB_GMS_TOKEN": "tok-123456\n"})
    assert config.gms.resolved_token() == "tok-123456"


@pytest.mark.parametrize(("field", "token"), [
    ("gms.token", "tok-12\n3456"), ("gms.token", "tok-12\x003456"), ("gms.token", "tok-12\u00e93456"),
    ("gms.token_file", "tok-12\r3456\n"),
])
def test_a_token_no_header_can_carry_is_refused_without_its_value(tmp_path: Path, field: str,
                                                                   token: str) -> None:
    if field == "gms.token":
        config = load_config(None, {**ENV, "DATAHUB_GMS_TOKEN": token})
    else:
        token_file = tmp_path / "token"
        token_file.write_text(token)
        text = f"gms: {{url: 'http://x:1', token_file: '{token_file}'}}\npools: [{{id: a}}]\n"
        config = load_config(write(tmp_path, text), {})
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as info:
        config.gms.resolved_token()
    assert "tok-12" not in str(info.value) and "3456" not in str(info.value)


def test_systemd_credential_directory_supplies_the_token(tmp_path: Path) -> None:
    (tmp_path / "gms-token").write_text("from-credential\n")
    config = load_config(None, {"DATAHUB_GMS_URL": "http://x:1", "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.gms.resolved_token() == "from-credential"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 3"):
        load_config(write(tmp_path, "gms:\n  url: x\n  - broken\n"), {})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "executor", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_check_accepts_every_example(example: Path, tmp_path: Path) -> None:
    # `check` judges the config for this host: give it the token and a state dir it can use.
    host = {"DATAHUB_GMS_TOKEN": "tok-example", "REMOTE_EXECUTOR_STATE_DIR": str(tmp_path / "state")}
    result = run_cli("check", "-c", str(example), env=host)
    assert result.returncode == 0, result.stderr
    assert "replace-with-the-remote-executor-token" not in result.stdout


def test_check_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "gms: {url: 'http://x:1', token: t}\npools: [{id: a, max_workers: many}]\n")
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert "pools[0].max_workers" in result.stderr and str(path) in result.stderr


def test_check_masks_the_token(tmp_path: Path) -> None:
    result = run_cli("check", env={**ENV, "REMOTE_EXECUTOR_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "tok-123456" not in result.stdout + result.stderr and "********" in result.stdout


def test_version_flag() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and "remote-executor" in result.stdout
