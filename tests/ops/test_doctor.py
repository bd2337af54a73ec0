"""``remote-executor doctor`` against the local control plane: all PASS, then one fault at a time.

Each fault (closed port, wrong token, unknown pool, expired lease, missing venv, unreachable
proxy, invalid config) must show as a FAIL line naming the problem and its fix, and make the
exit code non-zero. Most cases call the command in-process (fast); one runs it as a real
process to prove the wiring of ``python -m executor doctor``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.cli.main import main
from executor.local.controlplane.leases import LeaseBook
from executor.local.controlplane.server import ControlPlane
from tests.ops.connect_proxy import ConnectProxy
from tests.service.processes import ROOT, closed_port

SCRUBBED_ENV = ("DATAHUB_", "REMOTE_EXECUTOR_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
                "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(SCRUBBED_ENV):
            monkeypatch.delenv(name)


@pytest.fixture
def venv_root(tmp_path: Path) -> Path:
    """A bundled root whose ``file-bundled`` runs this test venv's Python (it has acryl-datahub)."""
    root = tmp_path / "venvs"
    (root / "file-bundled" / "bin").mkdir(parents=True)
    (root / "file-bundled" / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (root / "file-bundled" / "bin" / "python").chmod(0o755)
    (root / "file-bundled" / "bin" / "datahub").write_text("#!/bin/sh\n")
    return root


def write_config(tmp_path: Path, gms_url: str, venv_root: Path, pools: tuple[str, ...] = ("default",),
                 **extra: Any) -> Path:
    config = {
        "gms": {"url": gms_url},
        "state_dir": str(tmp_path / "state"),
        "pools": [{"id": p, "venvs": {"bundled_root": str(venv_root)}} for p in pools],
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def doctor(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config: Path, token: str,
           *args: str) -> tuple[int, dict[str, str], str]:
    """Run ``doctor`` in-process: (exit code, {check name: its line}, all output)."""
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", token)
    code = main(["doctor", "-c", str(config), "--timeout", "3", *args])
    captured = capsys.readouterr()
    lines = {}
    for line in captured.out.splitlines():
        name = line[6:34].strip()
        lines[name] = line
    return code, lines, captured.out + captured.err


def statuses(lines: dict[str, str]) -> dict[str, str]:
    return {name: line[:4] for name, line in lines.items()}


def test_everything_passes_against_the_control_plane(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    config = write_config(tmp_path, control_plane.gms_url, venv_root, pools=("default", "other"))
    code, lines, output = doctor(capsys, monkeypatch, config, control_plane.token, "--plugin", "file")
    assert code == 0, output
    expected = {
        "config", "token", "proxy (gms)", "dns (gms)", "gms health", "gms token", "state dir",
        "sandbox limits", "sandbox rlimits", "parent-death signal", "bwrap", "executor not dumpable",
        "recipe identity [default]", "recipe identity [other]",
        "venv builds [default]", "venv builds [other]",
        *(f"pool {p}: {c}" for p in ("default", "other")
          for c in ("lease", "proxy (sqs)", "dns (sqs)", "sqs", "venvs", "secrets file", "sources",
                    "venv file")),
    }
    assert set(lines) == expected
    assert all(status in ("PASS", "WARN") for status in statuses(lines).values()), output
    local = ("sandbox", "parent", "bwrap", "executor not", "recipe", "venv builds")
    outbound = {n for n in expected if not n.startswith(local)}
    assert {statuses(lines)[n] for n in outbound} == {"PASS"}
    assert "credentials expire in 3" in lines["pool default: lease"]
    assert "about 0 message(s) waiting" in lines["pool other: sqs"]
    assert "file under" in lines["pool default: venvs"]
    assert control_plane.token not in output and "ASIA" not in output  # no token, no AWS key ids


def test_closed_port_fails_health_and_skips_what_needs_gms(
    tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    config = write_config(tmp_path, f"http://127.0.0.1:{closed_port()}", venv_root)
    code, lines, output = doctor(capsys, monkeypatch, config, "some-token-value")
    assert code == 1
    assert lines["gms health"].startswith("FAIL") and "unreachable" in lines["gms health"]
    assert "fix: check gms.url" in lines["gms health"]
    assert statuses(lines)["gms token"] == "SKIP" and statuses(lines)["pool default: lease"] == "SKIP"
    assert statuses(lines)["state dir"] == "PASS"  # local checks still run
    assert "some-token-value" not in output


def test_wrong_token_is_named_with_its_fix(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    config = write_config(tmp_path, control_plane.gms_url, venv_root)
    code, lines, output = doctor(capsys, monkeypatch, config, "not-the-token-of-this-gms")
    assert code == 1
    assert statuses(lines)["gms health"] == "PASS"
    assert lines["gms token"].startswith("FAIL  gms token") and "HTTP 401" in lines["gms token"]
    assert 'fix: use a DataHub "Remote Executor" access token' in lines["gms token"]
    assert statuses(lines)["pool default: lease"] == "SKIP"
    assert "not-the-token-of-this-gms" not in output


def test_unknown_pool_fails_its_lease_only(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    config = write_config(tmp_path, control_plane.gms_url, venv_root, pools=("default", "emea"))
    code, lines, _ = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 1
    assert statuses(lines)["pool default: sqs"] == "PASS"
    assert lines["pool emea: lease"].startswith("FAIL")
    assert "no READY executor config for pool 'emea' (listed: default, other)" in lines["pool emea: lease"]
    assert "fix: check the pool id" in lines["pool emea: lease"]
    assert statuses(lines)["pool emea: sqs"] == "SKIP"


class StaleLeases(LeaseBook):
    """A GMS whose STS credentials come out already expired an hour ago."""

    def issue(self, access_key_id: str, pool_id: str, lease_seconds: float) -> Any:
        return super().issue(access_key_id, pool_id, lease_seconds - 7200)


def test_expired_lease_fails_lease_and_sqs(
    tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    cp = ControlPlane(pools=("default",))
    cp.leases = StaleLeases()
    cp.start()
    try:
        config = write_config(tmp_path, cp.gms_url, venv_root)
        code, lines, _ = doctor(capsys, monkeypatch, config, cp.token)
    finally:
        cp.stop()
    assert code == 1
    lease, sqs = lines["pool default: lease"], lines["pool default: sqs"]
    assert lease.startswith("FAIL") and "credentials expired 3" in lease
    assert "fix: compare this host's clock with NTP" in lease
    assert sqs.startswith("FAIL") and "SQS refused the leased credentials" in sqs and "ExpiredToken" in sqs


def test_missing_and_incomplete_venvs_name_the_build_command(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    config = write_config(tmp_path, control_plane.gms_url, venv_root)
    code, lines, _ = doctor(capsys, monkeypatch, config, control_plane.token, "--plugin", "snowflake")
    assert code == 1
    venvs = lines["pool default: venvs"]
    assert venvs.startswith("FAIL") and f"no bundled venv under {venv_root} for: snowflake" in venvs
    assert f"fix: remote-executor venv build --plugin snowflake --root {venv_root}" in venvs

    (venv_root / "file-bundled" / "bin" / "datahub").unlink()
    code, lines, _ = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 1 and "file-bundled lacks bin/datahub" in lines["pool default: venvs"]


def test_unreachable_proxy_from_the_environment_fails(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    port = closed_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://user:proxy-password@127.0.0.1:{port}")
    config = write_config(tmp_path, control_plane.gms_url, venv_root)
    code, lines, output = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 1
    assert lines["proxy (gms)"].startswith("FAIL  proxy (gms)")
    assert f"via http://***@127.0.0.1:{port} (from HTTP_PROXY): cannot connect" in lines["proxy (gms)"]
    assert "fix: check the proxy address in HTTP_PROXY" in lines["proxy (gms)"]
    assert statuses(lines)["gms health"] == "FAIL"
    assert "proxy-password" not in output


def test_configured_proxy_is_used_and_reported(
    control_plane: ControlPlane, tmp_path: Path, venv_root: Path, capsys: Any, monkeypatch: Any
) -> None:
    with ConnectProxy() as proxy:
        config = write_config(tmp_path, control_plane.gms_url, venv_root, proxy={"http": proxy.url})
        code, lines, output = doctor(capsys, monkeypatch, config, control_plane.token)
    assert code == 0, output
    assert f"via {proxy.url} (from config proxy.http), accepts connections" in lines["proxy (gms)"]
    assert f"via {proxy.url}" in lines["pool default: proxy (sqs)"]
    gateway = control_plane.sqs_gateway.split("//", 1)[1]
    assert {control_plane.gms_url.split("//", 1)[1], gateway} <= proxy.targets()


def test_invalid_config_exits_2_naming_the_field(tmp_path: Path, venv_root: Path, capsys: Any,
                                                 monkeypatch: Any) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:1", venv_root)
    data = yaml.safe_load(config.read_text())
    data["pools"][0]["max_workers"] = "lots"
    config.write_text(yaml.safe_dump(data))
    code, lines, _ = doctor(capsys, monkeypatch, config, "t")
    assert code == 2
    assert lines["config"].startswith("FAIL") and "pools[0].max_workers" in lines["config"]


def test_command_runs_as_a_process(control_plane: ControlPlane, tmp_path: Path, venv_root: Path) -> None:
    config = write_config(tmp_path, control_plane.gms_url, venv_root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV)}
    env["DATAHUB_GMS_TOKEN"] = control_plane.token
    done = subprocess.run([sys.executable, "-m", "executor", "doctor", "-c", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  pool default: sqs" in done.stdout
    assert "doctor: all checks passed" in done.stderr
    assert control_plane.token not in done.stdout + done.stderr
