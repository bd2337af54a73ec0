"""Issue 10: a dynamic venv build never runs a package's code with the executor's privileges.

A hostile index serves ``acryl-datahub`` as an sdist with an in-tree build backend (no index
needed: ``requires = []``), whose ``build_wheel`` probes what it can reach, and whose wheel
installs a ``.pth`` file that probes again when the venv's interpreter next starts (the build
reads the CLI's metadata with it). Each probe writes its findings (uid, whether the GMS token
is in its environment, whether it can read a 0600 state file of the executor's) to a drop dir.

Built for a ``run_as`` pool, every probe runs as the recipe user with no token and no access;
the venv is then the executor's and read-only. Built without ``run_as`` (the documented
weakness, which ``doctor`` names), the build runs as the executor: the probe reads the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.errors import BadInputError
from executor.sandbox.identity import RunAs
from executor.sandbox.venv_build import PipVenvBuilder
from executor.sandbox.venvs import VenvRequest
from tests.security.privilege_world import Users, throwaway_users

__all__ = ["throwaway_users"]
TOKEN = "venv-build-token-made-up-" + "x" * 16

PROBE = '''
import hashlib, json, os
def probe(stage):
    found = {"uid": os.getuid(), "env_token": any(
        hashlib.sha256(v.encode()).hexdigest() == DIGEST for v in os.environ.values())}
    try:
        with open(STATE_FILE, "rb") as handle:
            found["state_file"] = "read " + str(len(handle.read()))
    except OSError as exc:
        found["state_file"] = exc.strerror
    with open(os.path.join(DROP, stage + ".json"), "w") as out:
        json.dump(found, out)
'''

BACKEND = '''
import base64, hashlib, io, zipfile
{probe}
AT_START = "import json, os, hashlib\\n" + {probe!r} + "\\nprobe('start')\\n"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    probe("build")
    name = "acryl_datahub-0.0.1-py3-none-any.whl"
    files = {{
        "hostile_at_start.py": "DIGEST = {digest!r}\\nSTATE_FILE = {state!r}\\nDROP = {drop!r}\\n" + AT_START,
        "hostile.pth": "import hostile_at_start\\n",
        "acryl_datahub-0.0.1.data/scripts/datahub": "#!python\\nprint('hostile cli')\\n",
        "acryl_datahub-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\\nName: acryl-datahub\\n"
                                                 "Version: 0.0.1\\n",
        "acryl_datahub-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\n"
                                              "Tag: py3-none-any\\n",
    }}
    record = []
    with zipfile.ZipFile(wheel_directory + "/" + name, "w") as wheel:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(path + ",sha256=" + digest + "," + str(len(data)))
            wheel.writestr(path, data)
        record.append("acryl_datahub-0.0.1.dist-info/RECORD,,")
        wheel.writestr("acryl_datahub-0.0.1.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
'''

PYPROJECT = """[build-system]
requires = []
build-backend = "hostile_backend"
backend-path = ["."]
"""


def hostile_sdist(links: Path, drop: Path, state_file: Path) -> None:
    """``acryl-datahub-0.0.1.tar.gz`` in ``links``: its backend and its ``.pth`` probe."""
    constants = (f"DIGEST = {hashlib.sha256(TOKEN.encode()).hexdigest()!r}\n"
                 f"STATE_FILE = {str(state_file)!r}\nDROP = {str(drop)!r}\n")
    backend = constants + BACKEND.format(probe=PROBE, digest=hashlib.sha256(TOKEN.encode()).hexdigest(),
                                         state=str(state_file), drop=str(drop))
    members = {"pyproject.toml": PYPROJECT, "hostile_backend.py": backend,
               "PKG-INFO": "Metadata-Version: 2.1\nName: acryl-datahub\nVersion: 0.0.1\n"}
    with tarfile.open(links / "acryl-datahub-0.0.1.tar.gz", "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"acryl-datahub-0.0.1/{name}")
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    (links / "acryl-datahub-0.0.1.tar.gz").chmod(0o644)


@pytest.fixture
def area(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A traversable temp area: find-links, a world-writable drop dir, a 0600 state file of ours."""
    base = Path(tempfile.mkdtemp(prefix="resec-venv-"))
    try:
        base.chmod(0o711)
        for name, mode in (("links", 0o755), ("drop", 0o1777), ("store", 0o711)):
            (base / name).mkdir()
            (base / name).chmod(mode)
        (base / "outbox.key").write_text("executor-state-" + "k" * 24)
        (base / "outbox.key").chmod(0o600)
        hostile_sdist(base / "links", base / "drop", base / "outbox.key")
        monkeypatch.setenv("DATAHUB_GMS_TOKEN", TOKEN)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def python_for(run_as: RunAs | None, area: Path) -> str:
    """An interpreter with pip from which ``run_as`` can make a working venv (the executor's own,
    where the user can reach it; a test host may keep it in a private home: then the system's)."""
    if run_as is None:
        return sys.executable
    probe = area / "store" / "probe"
    probe.mkdir()
    os.chown(probe, run_as.uid, run_as.gid)
    for python in (sys.executable, "/usr/bin/python3"):
        shutil.rmtree(probe / "venv", ignore_errors=True)
        venv = probe / "venv"
        script = f"{python} -m venv --without-pip {venv} && {venv}/bin/python -c 1 && {python} -m pip -V"
        done = subprocess.run(["setpriv", f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups",
                               "--", "sh", "-c", script], capture_output=True, timeout=120, check=False)
        if done.returncode == 0:
            shutil.rmtree(probe)
            return python
    pytest.skip("no Python with pip here from which another user can make a venv")


def build(area: Path, run_as: RunAs | None) -> tuple[Path, str]:
    """Build the hostile request; the target and the build's outcome (``built`` or the error)."""
    builder = PipVenvBuilder(python=python_for(run_as, area), run_as=run_as, step_timeout_s=240,
                             pip_args=["--no-index", "--find-links", str(area / "links")])
    target = area / "store" / "venv"
    try:
        request = VenvRequest("hostile", "0.0.1", extra_requirements=("acryl-datahub==0.0.1",))
        builder.build(target, request, lambda _line: None)
    except BadInputError as exc:
        return target, str(exc)
    return target, "built"


def findings(area: Path) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in (area / "drop").glob("*.json")}


def test_a_run_as_build_runs_the_packages_code_as_the_recipe_user(area: Path, throwaway_users: Users) -> None:
    recipe = throwaway_users.recipe
    target, outcome = build(area, RunAs(recipe.uid, recipe.gid, recipe.name))
    found = findings(area)
    assert set(found) == {"build", "start"}, (outcome, found)  # both probes ran: the attack is real
    for stage, seen in found.items():
        assert seen["uid"] == recipe.uid, (stage, seen)
        assert seen["env_token"] is False, (stage, seen)
        assert seen["state_file"] == "Permission denied", (stage, seen)
    assert outcome == "built", outcome
    assert not (target / "extra-requirements.txt").exists()  # read by pip as the recipe user, then gone
    for path in [target, *target.rglob("*")]:  # taken back: the executor's, writable only by it
        info = path.lstat()
        assert info.st_uid == os.geteuid(), path
        if not stat.S_ISLNK(info.st_mode):
            assert not info.st_mode & 0o022 and info.st_mode & 0o004, (path, oct(info.st_mode))


def test_without_run_as_the_build_has_the_executors_privileges(area: Path) -> None:
    """The weakness ``doctor`` and docs/security.md name: shown, so the test above can fail."""
    _, outcome = build(area, None)
    found = findings(area)
    assert "build" in found, outcome
    assert found["build"]["uid"] == os.geteuid() and found["build"]["env_token"] is False
    assert str(found["build"]["state_file"]).startswith("read")


def test_taking_a_venv_back_and_writing_into_it_never_follow_planted_links(tmp_path: Path) -> None:
    """What the recipe user left in the venv cannot make the executor touch a file elsewhere."""
    from executor.sandbox.venv_owner import take_back, write_new_file

    foreign = tmp_path / "foreign"
    foreign.write_text("foreign content")
    foreign.chmod(0o600)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "tool").write_text("#!/bin/sh\n")
    (venv / "bin" / "tool").chmod(0o777)
    (venv / "lib.txt").write_text("data")
    (venv / "lib.txt").chmod(0o666)
    (venv / "link").symlink_to(foreign)
    (venv / "datahub-constraints.txt").symlink_to(foreign)
    take_back(venv)
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o600
    assert stat.S_IMODE((venv / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((venv / "lib.txt").stat().st_mode) == 0o644
    write_new_file(venv / "datahub-constraints.txt", "pins\n")
    assert foreign.read_text() == "foreign content"
    assert not (venv / "datahub-constraints.txt").is_symlink()
    assert (venv / "datahub-constraints.txt").read_text() == "pins\n"


def test_a_run_as_pool_builds_its_dynamic_venvs_as_the_recipe_user_outside_the_state_dir(
        tmp_path: Path, throwaway_users: Users) -> None:
    """The launcher's wiring: the policy names the recipe user and a cache it can pass through."""
    from executor.config import ExecutorConfig, GmsSettings, PoolSettings, RunAsSettings
    from executor.pool.context import PoolContext
    from executor.pool.sandboxing import SandboxLauncher
    from executor.sandbox.venvs import resolve_venv

    recipe = throwaway_users.recipe
    config = ExecutorConfig(gms=GmsSettings(url="http://127.0.0.1:1"), state_dir=tmp_path / "state",
                            pools=(PoolSettings(id="default", run_as=RunAsSettings(user=recipe.name)),))
    pool = PoolContext(config=config, pool=config.pools[0], token="made-up-token-1", instance_id="t")
    launcher = SandboxLauncher(pool, "urn:li:dataHubExecutionRequest:wiring")
    policy = launcher._policy()
    assert policy.run_as is not None and policy.run_as.uid == recipe.uid
    assert policy.cache_dir is not None and tmp_path / "state" not in policy.cache_dir.parents

    class Builder:
        def build(self, target: Path, request: VenvRequest, progress: object) -> None:
            (target / "bin").mkdir(parents=True)
            (target / "bin" / "datahub").write_text("#!/bin/sh\n")

    venv = resolve_venv(VenvRequest("hostile", "0.0.1"), policy, builder=Builder())
    try:
        assert venv.kind == "dynamic" and policy.cache_dir in venv.path.parents
        for directory in (policy.cache_dir.parent.parent, policy.cache_dir.parent, policy.cache_dir,
                          policy.cache_dir / "store"):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o711, directory  # passable, not listable
        assert stat.S_IMODE((policy.cache_dir / "locks").stat().st_mode) == 0o700
        assert launcher._identity == (policy.run_as, policy.cache_dir.parent)
    finally:
        venv.release()
