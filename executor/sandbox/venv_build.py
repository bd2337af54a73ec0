"""Building venvs with pip: dynamic ones for the cache, and bundled ``<plugin>-bundled`` ones.

Like DataHub's executor, a build first installs ``acryl-datahub`` alone (no dependencies) to
read the ``constraints.txt`` it ships, then installs ``acryl-datahub[<plugins>]`` under those
constraints, then the extra requirements without them. pip runs from the executor's own
environment (``--python`` points it at the new venv, so the venv needs no pip of its own),
with the executor's credentials removed from its environment. Every output line goes to
``progress``.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from executor.errors import BadInputError
from executor.sandbox.environment import CREDENTIAL_NAMES
from executor.sandbox.stoppable import run_lines
from executor.sandbox.venv_cache import FileLock
from executor.sandbox.venvs import LATEST, Progress, VenvBuilder, VenvRequest, bundled_venv_path

METADATA = "metadata.json"
STEP_TIMEOUT_S = 900.0
"""One pip step that runs longer than this is killed (a hung index, a runaway build)."""


def installed_datahub_version() -> str | None:
    """The acryl-datahub version installed beside the executor, if any (pip may reuse its wheel)."""
    try:
        return importlib.metadata.version("acryl-datahub")
    except importlib.metadata.PackageNotFoundError:
        return None


class PipVenvBuilder:
    """Builds venvs with ``python -m venv`` and pip; ``pip_args`` go to every install (index, proxy)."""

    def __init__(self, python: str = sys.executable, pip_args: Sequence[str] = (),
                 stop: threading.Event | None = None, step_timeout_s: float = STEP_TIMEOUT_S) -> None:
        self.python = python
        self.pip_args = tuple(pip_args)
        self.stop = stop
        """Set by the task when it stops: the step running is killed, the build raises ``Stopped``."""
        self.step_timeout_s = step_timeout_s

    def build(self, target: Path, request: VenvRequest, progress: Progress) -> None:
        """Create ``target`` and install the request into it; raise with pip's last lines on failure."""
        self._run([self.python, "-m", "venv", "--without-pip", str(target)], progress, "create the venv")
        bare = "acryl-datahub" if request.version == LATEST else f"acryl-datahub=={request.version}"
        self._pip(target, ["--no-deps", bare], progress, f"pip install {bare}")
        installed = venv_datahub_version(target)
        self._install_constrained(target, request.requirement(installed), progress)
        if request.extra_requirements:
            with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=target, delete=False) as reqs:
                reqs.write("\n".join(request.extra_requirements) + "\n")
            self._pip(target, ["-r", reqs.name], progress, "pip install the extra requirements")
            os.unlink(reqs.name)
        if not (target / "bin" / "datahub").exists():
            raise BadInputError(f"the build of {target} produced no bin/datahub")

    def _install_constrained(self, target: Path, requirement: str, progress: Progress) -> None:
        """Install under the shipped constraints; if they cannot be met here, once more without."""
        shipped = next(iter(target.glob("lib/python*/site-packages/datahub/constraints.txt")), None)
        if shipped is None:
            progress("acryl-datahub ships no constraints.txt; installing without constraints")
            self._pip(target, [requirement], progress, f"pip install {requirement}")
            return
        constraints = target / "datahub-constraints.txt"
        constraints.write_text(runtime_constraints(shipped.read_text()))
        try:
            self._pip(target, [requirement, "--constraint", str(constraints)], progress,
                      f"pip install {requirement} under the shipped constraints")
        except BadInputError:
            progress("the shipped constraints cannot be met from this index; retrying without them")
            self._pip(target, [requirement], progress, f"pip install {requirement}")

    def _pip(self, target: Path, args: list[str], progress: Progress, step: str) -> None:
        command = [self.python, "-m", "pip", "--disable-pip-version-check", "--python",
                   str(target / "bin" / "python"), "install", *self.pip_args, *args]
        self._run(command, progress, step)

    def _run(self, command: list[str], progress: Progress, step: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_NAMES}
        env["PIP_PROGRESS_BAR"] = "off"
        progress("$ " + " ".join(command[2:] if command[1] == "-m" else command))
        tail: list[str] = []

        def on_line(line: str) -> None:
            progress(line)
            tail[:] = [*tail[-19:], line]

        code = run_lines(command, env, on_line, self.stop, self.step_timeout_s, f"venv build step '{step}'")
        if code != 0:
            last = "\n".join(tail)
            raise BadInputError(f"venv build step '{step}' failed (exit {code}):\n{last}")


INSTALLER_PACKAGES = frozenset({"pip", "setuptools", "wheel", "uv"})


def runtime_constraints(text: str) -> str:
    """The shipped constraints without pins of installer tools (pip, setuptools, wheel, uv).

    Those pins say which tools built DataHub's lock file, not what a recipe needs, and a
    private index often lacks that exact pip.
    """
    kept = []
    for line in text.splitlines():
        name = line.split(";")[0].split("==")[0].strip().lower()
        if name not in INSTALLER_PACKAGES:
            kept.append(line)
    return "\n".join(kept) + "\n"


def venv_datahub_version(target: Path) -> str:
    """The acryl-datahub version installed in the venv at ``target``."""
    script = "import importlib.metadata as m; print(m.version('acryl-datahub'))"
    done = subprocess.run([str(target / "bin" / "python"), "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise BadInputError(f"acryl-datahub is not installed in {target}")
    return done.stdout.strip()


def read_metadata(venv: Path) -> dict[str, object] | None:
    """``metadata.json`` of a bundled venv, or None when absent or unreadable."""
    try:
        data = json.loads((venv / METADATA).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _matches(venv: Path, plugin: str, cli_version: str) -> bool:
    meta = read_metadata(venv)
    if meta is None or not (venv / "bin" / "python").exists() or not (venv / "bin" / "datahub").exists():
        return False
    plugins = meta.get("plugins")
    same_version = cli_version == LATEST or meta.get("cli_version") == cli_version
    return isinstance(plugins, list) and plugin in plugins and same_version


def ensure_bundled_venv(root: Path, plugin: str, cli_version: str | None = None,
                        progress: Progress | None = None, builder: VenvBuilder | None = None) -> Path:
    """``<root>/<plugin>-bundled``: reused when its metadata matches, else (re)built with pip.

    ``cli_version`` defaults to the acryl-datahub installed beside the executor, else latest.
    Builds in place (venvs are not relocatable) under a lock; ``metadata.json`` is written
    last, so a venv without it is an unfinished build and is rebuilt.
    """
    say = progress or (lambda _line: None)
    version = cli_version or installed_datahub_version() or LATEST
    target = bundled_venv_path(root, plugin)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / f".{plugin}-bundled.lock")
    try:
        lock.acquire(fcntl.LOCK_EX, 3600.0, say, f"another build of {target.name}")
        if _matches(target, plugin, version):
            say(f"{target} is up to date (acryl-datahub {version})")
            return target
        if target.exists() or target.is_symlink():
            say(f"removing {target} (incomplete or another version)")
            _remove(target)
        (builder or PipVenvBuilder()).build(target, VenvRequest(plugin, version), say)
        meta = {"plugins": [plugin], "cli_version": venv_datahub_version(target),
                "python_version": ".".join(map(str, sys.version_info[:3])),
                "built_at": datetime.now(timezone.utc).isoformat(), "built_by": "remote-executor venv build"}
        temporary = target / f".{METADATA}.tmp"
        temporary.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(temporary, target / METADATA)
        say(f"built {target} (acryl-datahub {meta['cli_version']})")
        return target
    finally:
        lock.close()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)
