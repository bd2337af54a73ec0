"""What a production install loads, and what a base install says about the ``local`` extra.

The stand-in control plane (``executor.local.controlplane``) is for trying and testing: the service's
commands must never import it. A base install (no extras) runs the service, and the commands
that need the ``local`` extra say which extra to install instead of a ``ModuleNotFoundError``.
The base install is a real venv with ``pip install -e <checkout>`` (no extras), kept under the
repository's ``.cache/`` and rebuilt only when setup.cfg changes.
"""

from __future__ import annotations

import ast
import configparser
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from executor.cli.extras import LOCAL, LOCAL_MODULES

ROOT = Path(__file__).resolve().parents[2]
BASE_VENV = ROOT / ".cache" / "base-install-venv"
STAND_IN = "executor.local"
MAY_IMPORT_STAND_IN = {"executor/cli/local.py"}
"""The commands that run the stand-in on purpose (behind ``needs_extra``)."""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAHUB_", "REMOTE_EXECUTOR_"))}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


@pytest.fixture(scope="session")
def base_python() -> Path:
    """The interpreter of a venv holding remote-executor without extras (built once per setup.cfg)."""
    BASE_VENV.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()
    stamp = BASE_VENV / ".base-install"
    with open(BASE_VENV.parent / ".base-install-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs build it once
        if not (stamp.exists() and stamp.read_text() == digest):
            shutil.rmtree(BASE_VENV, ignore_errors=True)
            venv.EnvBuilder(with_pip=True).create(BASE_VENV)
            pip = [str(BASE_VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
            subprocess.run([*pip, "install", "-e", str(ROOT)], check=True, timeout=900, env=clean_env())
            stamp.write_text(digest)
    return BASE_VENV / "bin" / "python"


def test_the_base_install_has_no_local_extra(base_python: Path) -> None:
    probe = "import importlib.util as u; print([m for m in ('graphql', 'moto') if u.find_spec(m)])"
    found = subprocess.run([str(base_python), "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", "the base venv is not a base install"


@pytest.mark.parametrize("command", [["controlplane"], ["demo", "--venv-root", "unused"]])
def test_commands_of_the_local_extra_say_what_to_install(base_python: Path, command: list[str]) -> None:
    result = subprocess.run(
        [str(base_python), "-m", "executor", *command],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=clean_env(),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr
    assert f"`{command[0]}` needs the '{LOCAL}' extra" in result.stderr
    assert f"pip install 'remote-executor[{LOCAL}]'" in result.stderr
    assert "graphql-core" in result.stderr


def test_the_base_install_checks_a_config(base_python: Path, tmp_path: Path) -> None:
    env = clean_env(
        DATAHUB_GMS_URL="http://127.0.0.1:9", DATAHUB_GMS_TOKEN="tok-base",
        REMOTE_EXECUTOR_STATE_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [str(base_python), "-m", "executor", "check"], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK: 1 pool(s)" in result.stderr


def test_the_extra_named_in_the_hint_provides_the_modules() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    local = setup["options.extras_require"][LOCAL]
    requirements = {line.split(">")[0].split("=")[0].strip() for line in local.splitlines() if line.strip()}
    assert set(LOCAL_MODULES.values()) <= requirements


def test_the_service_commands_never_load_the_stand_in() -> None:
    """Import the CLI and every module outside the stand-in; nothing of it may be loaded."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in sorted((ROOT / "executor").rglob("*.py"))
        if not path.relative_to(ROOT).as_posix().startswith("executor/local/")
        and path.name != "__main__.py"
    ]
    script = (
        "import importlib, json, sys\n"
        "from executor.cli.main import build_parser\n"
        "build_parser()\n"
        f"for name in {modules!r}: importlib.import_module(name.removesuffix('.__init__'))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = json.loads(result.stdout)
    assert "executor.service" in loaded and "executor.cli.tools" in loaded
    assert [m for m in loaded if m.startswith((STAND_IN, "graphql", "moto"))] == []


def test_only_the_local_commands_import_the_stand_in() -> None:
    """Also the imports inside functions, which run only when a command does."""
    offenders = []
    for path in sorted((ROOT / "executor").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("executor/local/") or relative in MAY_IMPORT_STAND_IN:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == STAND_IN or n.startswith(STAND_IN + ".") for n in names):
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []


def test_check_runs_without_loading_the_stand_in(tmp_path: Path) -> None:
    """``python -m executor check`` for real, then the modules it loaded."""
    env = clean_env(
        DATAHUB_GMS_URL="http://127.0.0.1:9", DATAHUB_GMS_TOKEN="tok-x",
        REMOTE_EXECUTOR_STATE_DIR=str(tmp_path),
    )
    script = (
        "import json, runpy, sys\n"
        "sys.argv = ['remote-executor', 'check']\n"
        "try:\n    runpy.run_module('executor', run_name='__main__')\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["code"] == 0, result.stderr[-2000:]
    assert "executor.cli.service" in answer["modules"] and "executor.config" in answer["modules"]
    assert [m for m in answer["modules"] if m.startswith((STAND_IN, "graphql", "moto"))] == []
