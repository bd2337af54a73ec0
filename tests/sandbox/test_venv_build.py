"""Building venvs: the pip builder (offline, with a hand-made wheel), bundled venvs and the CLI.

The one test that installs the real acryl-datahub is marked ``cli``; it builds into the
repository's ``.cache/venvs`` (git-ignored) once and reuses it afterwards, then runs a real
``datahub ingest run`` inside the sandbox with a secret passed on stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from executor.cli.main import main as cli_main
from executor.errors import BadInputError
from executor.sandbox import SandboxRun, SandboxSpec, build_env
from executor.sandbox.venv_build import (
    PipVenvBuilder,
    ensure_bundled_venv,
    read_metadata,
    runtime_constraints,
    unserved_pins,
    without_pins,
)
from executor.sandbox.venvs import VenvRequest, find_bundled_venv

from .venv_fakes import FakeBuilder, make_datahub_wheel, make_wheel

REPO = Path(__file__).resolve().parents[2]


def test_runtime_constraints_drop_installer_pins_only() -> None:
    text = "pip==26.2.2 ; python_version >= '3.11'\nrequests==2.32.5\n    # via x\nSetuptools==80\nuv==0.5\n"
    assert runtime_constraints(text) == "requests==2.32.5\n    # via x\n"


def test_pip_builder_installs_under_the_shipped_constraints_offline(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_datahub_wheel(wheels, "0.0.1")
    lines: list[str] = []
    builder = PipVenvBuilder(pip_args=("--no-index", "--find-links", str(wheels)))
    target = tmp_path / "venv"
    builder.build(target, VenvRequest("file", "0.0.1"), lines.append)
    out = subprocess.run([str(target / "bin" / "datahub")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "tiny datahub"
    assert any("under the CLI's constraints" in line for line in lines), "the plugin install used them"
    assert len(lines) == 3 and all(line.startswith(f"[{i}/3] ") for i, line in enumerate(lines, 1)), lines
    assert "pip==" not in (target / "datahub-constraints.txt").read_text()


def test_pip_builder_failure_says_which_step_failed(tmp_path: Path) -> None:
    builder = PipVenvBuilder(pip_args=("--no-index", "--find-links", str(tmp_path)))
    with pytest.raises(BadInputError, match=r"'pip install acryl-datahub==9\.9\.9' failed") as caught:
        builder.build(tmp_path / "venv", VenvRequest("file", "9.9.9"), lambda line: None)
    assert "No matching distribution" in str(caught.value), "pip's last lines are in the error"


def test_ensure_bundled_venv_writes_metadata_and_reuses_it(tmp_path: Path) -> None:
    builder = FakeBuilder()
    path = ensure_bundled_venv(tmp_path, "file", "1.2.3", builder=builder)
    assert path == tmp_path / "file-bundled"
    meta = read_metadata(path)
    assert meta is not None and meta["plugins"] == ["file"] and meta["cli_version"] == "1.2.3"
    assert find_bundled_venv(tmp_path, "file").datahub == path / "bin" / "datahub"
    ensure_bundled_venv(tmp_path, "file", "1.2.3", builder=builder)
    assert builder.builds == ["1.2.3"], "matching metadata: reused"
    ensure_bundled_venv(tmp_path, "file", "1.2.4", builder=builder)
    assert builder.builds == ["1.2.3", "1.2.4"], "another version: rebuilt"
    rebuilt = read_metadata(path)
    assert rebuilt is not None and rebuilt["cli_version"] == "1.2.4" and rebuilt["plugins"] == ["file"]


def test_unfinished_bundled_venv_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "file-bundled" / "bin").mkdir(parents=True)  # no metadata.json: a crashed build
    builder = FakeBuilder()
    ensure_bundled_venv(tmp_path, "file", "1.2.3", builder=builder)
    assert builder.builds == ["1.2.3"]


def test_cli_build_and_list_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    wheels = tmp_path / "wheels"
    make_datahub_wheel(wheels, "0.0.2")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    root = tmp_path / "venvs"
    assert cli_main(["venv", "build", "--plugin", "file", "--cli-version", "0.0.2", "--root", str(root)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(root / "file-bundled")
    steps = [line.strip() for line in captured.err.splitlines() if line.strip().startswith("[")]
    assert [s[:5] for s in steps] == ["[1/3]", "[2/3]", "[3/3]"], captured.err
    assert "Processing" not in captured.err and "Successfully installed" not in captured.err, "pip is quiet"
    (root / "broken-bundled").mkdir()
    monkeypatch.setenv("DATAHUB_BUNDLED_VENV_PATH", str(root))
    assert cli_main(["venv", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("broken-bundled") and "incomplete: no bin/python" in lines[0]
    assert lines[1] == "file-bundled\tcli 0.0.2\tplugins file\tok"


def test_cli_build_refuses_a_bad_plugin_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["venv", "build", "--plugin", "../x", "--root", str(tmp_path)]) == 2
    assert "invalid plugin name" in capsys.readouterr().err


@pytest.mark.cli
def test_real_datahub_runs_in_the_sandbox_with_a_secret_on_stdin(tmp_path: Path) -> None:
    venv = ensure_bundled_venv(REPO / ".cache" / "venvs", "file", progress=lambda line: None)
    datahub = find_bundled_venv(venv.parent, "file")
    source = tmp_path / "in.json"
    source.write_text(json.dumps([{
        "entityType": "dataset", "entityUrn": "urn:li:dataset:(urn:li:dataPlatform:hive,db.t,PROD)",
        "changeType": "UPSERT", "aspectName": "status", "aspect": {"json": {"removed": False}}}]))
    secret = "fake-secret-for-the-sink"
    recipe = (f"source:\n  type: file\n  config:\n    path: {source}\n"
              f"sink:\n  type: file\n  config:\n    filename: {tmp_path}/out-${{OUT_NAME}}.json\n")
    stdin = json.dumps({"__recipe_yaml__": recipe, "__secrets__": {"OUT_NAME": secret}}).encode()
    env = build_env(os.environ, {"DATAHUB_TELEMETRY_ENABLED": "false"}, {}, tmp_path)
    spec = SandboxSpec(argv=datahub.ingest_argv(), stdin=stdin, secrets=[secret], env=env,
                       report_file="report.json",
                       work_root=tmp_path / "work", task_id="cli-test")
    run = SandboxRun(spec)
    run.start()
    result = run.wait(120)
    assert result is not None and result.outcome == "exited", result and result.log_text[-2000:]
    assert result.exit_code == 0 and result.suggested_status == "SUCCESS"
    assert (tmp_path / f"out-{secret}.json").exists(), "the secret reached the CLI through stdin"
    # The CLI redacts the secret itself here; the sandbox's masking is covered by the purpose-written
    # children of test_run_isolation.py.
    assert secret not in result.log_text
    assert "Pipeline finished successfully" in result.log_text


def offline(wheels: Path, verbose: bool = False) -> PipVenvBuilder:
    return PipVenvBuilder(pip_args=("--no-index", "--find-links", str(wheels)), verbose=verbose)


def test_a_pin_the_index_does_not_offer_is_left_out_and_named(tmp_path: Path) -> None:
    """The shipped constraints pin ``tiny-dep==1.0`` (yanked, say) and the index has only 1.0.post1:
    the old builder hit ResolutionImpossible and dropped every constraint; now that pin alone goes."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tiny-dep", "1.0.post1")
    make_wheel(wheels, "other-dep", "2.0")
    make_wheel(wheels, "other-dep", "3.0")
    constraints = "tiny-dep==1.0 ; python_version >= '3.8'\n    # via acryl-datahub\nother-dep==2.0\n"
    make_datahub_wheel(wheels, "0.0.3", constraints, requires=("tiny-dep", "other-dep"))
    lines: list[str] = []
    target = tmp_path / "venv"
    offline(wheels).build(target, VenvRequest("file", "0.0.3"), lines.append)
    assert [line for line in lines if "does not offer" in line] == [
        "the index does not offer tiny-dep==1.0 (pinned by the CLI's constraints); installing with those "
        "left unpinned"]
    assert not any("ResolutionImpossible" in line or "retrying without" in line for line in lines)
    kept = (target / "datahub-constraints.txt").read_text()
    assert "other-dep==2.0" in kept and "tiny-dep" not in kept.split("#")[0]
    version = subprocess.run([str(target / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('other-dep'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "2.0", "the other pins still hold"


def test_unserved_pins_are_read_from_pips_two_messages() -> None:
    constraints = "Certifi==2026.10.19 ; python_full_version >= '3.11'\nrequests==2.32.5\n"
    output = ["    The user requested (constraint) certifi==2026.10.19",
              "ERROR: No matching distribution found for requests==2.32.5", "unrelated==1.0"]
    assert unserved_pins(output, constraints) == ["Certifi==2026.10.19", "requests==2.32.5"]
    assert without_pins(constraints, ["requests==2.32.5"]).startswith("Certifi==")
    assert "requests" not in without_pins(constraints, ["requests==2.32.5"])


def test_a_source_without_an_extra_installs_without_one(tmp_path: Path) -> None:
    """``file`` is a source type with no pip extra: no ``acryl-datahub[file]`` (pip's warning)."""
    wheels = tmp_path / "wheels"
    make_datahub_wheel(wheels, "0.0.4")
    lines: list[str] = []
    offline(wheels, verbose=True).build(tmp_path / "venv", VenvRequest("file", "0.0.4"), lines.append)
    assert not any("acryl-datahub[file]" in line or "does not provide the extra" in line for line in lines)
    lines.clear()
    offline(wheels, verbose=True).build(tmp_path / "db", VenvRequest("tiny-db", "0.0.4"), lines.append)
    assert any("acryl-datahub[tiny-db]==0.0.4" in line for line in lines)


def test_a_sink_is_refused_because_no_request_could_use_its_venv(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_datahub_wheel(wheels, "0.0.5")
    with pytest.raises(BadInputError, match=r"'datahub-rest' is not a source type of acryl-datahub 0\.0\.5"):
        offline(wheels).build(tmp_path / "venv", VenvRequest("datahub-rest", "0.0.5"), lambda line: None)
