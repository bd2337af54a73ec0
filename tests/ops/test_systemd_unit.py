"""The systemd unit: systemd's own verifier accepts it, and its key settings are what the docs promise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from executor.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "remote-executor.service"
EXEC_PREFIX = "/opt/remote-executor/bin/remote-executor"
DRAIN_DEFAULT_S = 120
SECURITY_THRESHOLD = 50
"""Exposure x10 (systemd-analyze security --threshold takes 0..100); the unit scores 4.5 today (3.6
before it kept the five capabilities that running recipes as another user needs)."""


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}`` as systemd reads it (comments and blanks skipped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values is not None, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times"
    return values[0]


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60, "m": 60}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * factor
    return float(value)


def test_notify_and_watchdog(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert _seconds(one(unit, "Service", "WatchdogSec")) == 60


def test_runs_the_executor_as_its_own_user(unit: dict[str, dict[str, list[str]]]) -> None:
    exec_start = one(unit, "Service", "ExecStart").split()
    assert exec_start[0] == EXEC_PREFIX
    assert exec_start[1] == "run"
    assert one(unit, "Service", "User") == "remote-executor"
    assert one(unit, "Service", "Group") == "remote-executor"


def test_token_arrives_as_a_credential_not_in_the_environment(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Service", "LoadCredential") == "gms-token:/etc/remote-executor/gms-token"
    assert one(unit, "Service", "EnvironmentFile") == "-/etc/remote-executor/env"
    assert "TOKEN" not in " ".join(unit["Service"].get("Environment", []))
    from executor.config_sources import CREDENTIAL_NAME

    assert CREDENTIAL_NAME == "gms-token"


def test_restart_policy_spares_config_errors(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Service", "Restart") == "on-failure"
    assert _seconds(one(unit, "Service", "RestartSec")) > 0
    assert one(unit, "Service", "RestartPreventExitStatus") == str(int(ExitCode.CONFIG))


def test_stop_timeout_outlasts_the_drain(unit: dict[str, dict[str, list[str]]]) -> None:
    from executor.config import ShutdownSettings

    assert ShutdownSettings().drain_s == DRAIN_DEFAULT_S
    assert _seconds(one(unit, "Service", "TimeoutStopSec")) == 150 > DRAIN_DEFAULT_S
    assert one(unit, "Service", "KillMode") == "mixed"
    assert one(unit, "Service", "OOMPolicy") == "continue"


def test_hardening(unit: dict[str, dict[str, list[str]]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/remote-executor /var/lib/remote-executor-work",
        "StateDirectory": "remote-executor remote-executor-work",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "CAP_SETUID CAP_SETGID CAP_KILL CAP_CHOWN CAP_DAC_OVERRIDE",
        "AmbientCapabilities": "CAP_SETUID CAP_SETGID CAP_KILL CAP_CHOWN CAP_DAC_OVERRIDE",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    assert "MemoryDenyWriteExecute" not in unit["Service"]
    assert "MemoryDenyWriteExecute= is deliberately absent" in UNIT.read_text()
    assert "Delegate=yes" in UNIT.read_text()


def test_install_section(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert one(unit, "Unit", "After") == "network-online.target"


def _verifiable_copy(tmp_path: Path) -> Path:
    """The unit with only its ExecStart binary moved to one that exists here.

    ``systemd-analyze verify`` checks that the ExecStart binary exists; the install path
    (/opt/remote-executor) does not on a build machine, so point that one line at this venv's
    entry point. Every other line is verified as shipped.
    """
    entry = Path(sys.executable).with_name("remote-executor")
    if not entry.exists():
        pytest.fail(f"the project is not installed in this venv ({entry} missing)")
    text = UNIT.read_text()
    assert text.count(f"ExecStart={EXEC_PREFIX} ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={EXEC_PREFIX} ", f"ExecStart={entry} "))
    return copy


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    return tool


def test_systemd_analyze_verify_accepts_it(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    copy = _verifiable_copy(tmp_path)
    done = subprocess.run([tool, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    # verify exits 0 on unknown keys and unparsable values, and only warns: any output is a failure.
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "" and done.stdout.strip() == "", done.stderr + done.stdout


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    copy = _verifiable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("KillMode=mixed", "KillMode=mixd"))
    done = subprocess.run([tool, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert "kill mode" in done.stderr


def test_security_exposure_stays_low(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    copy = _verifiable_copy(tmp_path)
    done = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", f"--threshold={SECURITY_THRESHOLD}", str(copy)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout[-600:] + done.stderr
    assert "Overall exposure level" in done.stdout
