"""``doctor`` tries what a pool's tasks use: its secret stores and a venv per source it runs.

The old failure: with an ``aws-secrets-manager`` store and no AWS identity on the host, doctor
said "all checks passed" and every task failed later with NoCredentialsError. Secrets Manager
is moto's (the control plane's embedded server, over HTTP on loopback); the sources are created
in the control plane as DataHub's UI would, and the plugin check runs the venv's own Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.local.controlplane.server import ControlPlane
from executor.observability.doctor_sources import _source_type
from tests.fixtures.controlplane import graphql
from tests.ops.test_doctor import _clean_env, doctor, statuses, venv_root

__all__ = ["_clean_env", "venv_root"]  # fixtures used here
CREATE_SOURCE = "mutation($i: UpdateIngestionSourceInput!) { createIngestionSource(input: $i) }"


@pytest.fixture
def no_aws_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A host on which the default AWS credential chain finds nothing."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def write_config(tmp_path: Path, gms_url: str, pools: list[dict[str, Any]]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"gms": {"url": gms_url}, "state_dir": str(tmp_path / "state"),
                                    "pools": pools}))
    return path


def aws_pool_config(tmp_path: Path, cp: ControlPlane, root: Path) -> Path:
    pools = [{"id": "default", "venvs": {"bundled_root": str(root)},
              "secrets": {"stores": ["env", "aws-secrets-manager"], "aws": {"region": "us-east-1"}}}]
    return write_config(tmp_path, cp.gms_url, pools)


def add_source(cp: ControlPlane, name: str, recipe: dict[str, Any], version: str,
               pool: str = "default") -> None:
    config = {"recipe": json.dumps(recipe), "executorId": pool, "version": version}
    graphql(cp, CREATE_SOURCE, {"i": {"name": name, "type": "file", "config": config}})


def test_aws_store_without_credentials_fails_before_any_task_does(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any,
    no_aws_identity: None,
) -> None:
    config = aws_pool_config(tmp_path, control_plane, venv_root)
    code, lines, output = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 1, output
    line = lines["pool default: secrets aws"]
    assert line.startswith("FAIL") and "no AWS credentials" in line and "NoCredentialsError" in line
    assert "fix: give the host an AWS identity" in line
    assert "all checks passed" not in output


def test_aws_store_with_the_hosts_credentials_passes(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any,
    no_aws_identity: None,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "host-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-key-value")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", control_plane.sqs_endpoint)  # moto
    config = aws_pool_config(tmp_path, control_plane, venv_root)
    code, lines, output = doctor(capsys, monkeypatch, config, control_plane.token)
    assert statuses(lines)["pool default: secrets aws"] == "PASS", output
    assert "from env" in lines["pool default: secrets aws"]
    assert "host-secret-key-value" not in output
    assert code == 0, output


def test_aws_store_refusing_the_credentials_fails(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any,
    no_aws_identity: None,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "host-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-key-value")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{closed_port_number()}")
    config = aws_pool_config(tmp_path, control_plane, venv_root)
    code, lines, _ = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 1
    assert statuses(lines)["pool default: secrets aws"] == "FAIL"
    assert "unreachable" in lines["pool default: secrets aws"]


def closed_port_number() -> int:
    from tests.service.processes import closed_port

    return closed_port()


def test_unreadable_file_store_dir_fails(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    not_a_dir = tmp_path / "secrets"
    not_a_dir.write_text("a file, not a directory")
    pools = [{"id": "default", "venvs": {"bundled_root": str(venv_root)},
              "secrets": {"stores": ["file"], "file_dir": str(not_a_dir)}}]
    config = write_config(tmp_path, control_plane.gms_url, pools)
    code, lines, _ = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 1 and statuses(lines)["pool default: secrets file"] == "FAIL"


def venv_like(root: Path, source_type: str) -> None:
    """``<root>/<type>-bundled`` whose Python is this test venv's, which has acryl-datahub."""
    bin_dir = root / f"{source_type}-bundled" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "datahub").write_text("#!/bin/sh\n")


def test_each_source_type_a_pool_runs_needs_a_venv_that_loads_it(
    control_plane: ControlPlane, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    venv_root = tmp_path / "venvs"
    venv_like(venv_root, "file")
    venv_like(venv_root, "nosuch")
    shop = {"source": {"type": "file", "config": {"path": "/x.json"}}}
    add_source(control_plane, "shop files", shop, "bundled")
    add_source(control_plane, "warehouse", {"source": {"type": "snowflake", "config": {}}}, "bundled")
    mysql = {"source": {"type": "mysql", "config": {}}}
    add_source(control_plane, "elsewhere", mysql, "bundled", pool="other")
    add_source(control_plane, "typo", {"source": {"type": "nosuch", "config": {}}}, "bundled")
    add_source(control_plane, "pinned", {"source": {"type": "file", "config": {}}}, "1.7.0.17")
    pools = [{"id": "default", "venvs": {"bundled_root": str(venv_root), "dependency_resolution": False}}]
    config = write_config(tmp_path, control_plane.gms_url, pools)
    code, lines, output = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 1
    assert "4 ingestion source(s) run here" in lines["pool default: sources"], output
    assert statuses(lines)["pool default: venv file"] == "PASS", output
    assert "wanted by: shop files" in lines["pool default: venv file"]
    warehouse = lines["pool default: venv snowflake"]
    assert warehouse.startswith("FAIL") and "snowflake-bundled" in warehouse
    assert "fix: remote-executor venv build --plugin snowflake" in warehouse
    typo = lines["pool default: venv nosuch"]
    assert typo.startswith("FAIL") and "has no source plugin 'nosuch'" in typo
    assert lines["pool default: versions"].startswith("FAIL") and "pinned (1.7.0.17)" in output
    assert "mysql" not in output, "another pool's sources are not this pool's business"


def test_doctor_as_a_process_with_aws_store_and_no_identity(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path
) -> None:
    """The issue's case end to end: ``python -m executor doctor`` exits 1 and names the store."""
    import os
    import subprocess

    config = aws_pool_config(tmp_path, control_plane, venv_root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATAHUB_", "REMOTE_EXECUTOR_"))}
    env.update(DATAHUB_GMS_TOKEN=control_plane.token, AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run([sys.executable, "-m", "executor", "doctor", "-c", str(config), "--timeout", "3"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  pool default: secrets aws" in done.stdout
    assert "problems found" in done.stderr


@pytest.mark.parametrize("recipe", ["[" * 200_000, "{a: " * 200_000])
def test_a_recipe_nested_too_deep_has_no_source_type(recipe: str) -> None:
    """GMS's recipe text: ``json`` and ``yaml`` raise ``RecursionError`` on it, not their errors."""
    assert _source_type(recipe) is None
