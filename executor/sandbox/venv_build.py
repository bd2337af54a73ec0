"""Building venvs with pip: dynamic ones for the cache, and bundled ``<plugin>-bundled`` ones.

Like DataHub's executor, a build first installs ``acryl-datahub`` alone (no dependencies) to
read the ``constraints.txt`` it ships, then installs ``acryl-datahub[<plugins>]`` under those
constraints, then the extra requirements without them. pip runs from the executor's own
environment (``--python`` points it at the new venv, so the venv needs no pip of its own),
with the executor's credentials removed from its environment.

A build runs the requested packages' own code (an sdist's build backend, a ``.pth`` file at
the venv's next interpreter start), and the request comes from whoever may edit a recipe. So
with ``run_as`` (a pool's recipe user) every step runs as that user, through the exec wrapper
(``launch.py``: no capabilities, ``no_new_privs``) and with the recipe's allowlisted
environment (``build_env``): in a venv dir the executor made and handed to it. After the last
step the executor takes the tree back (its own, nothing writable but by it, readable by all)
so that a later recipe cannot alter the venv that other runs of the pool use. Without
``run_as`` the build runs as the executor (``doctor`` says so; docs/security.md).

``progress`` gets one line per step; pip's own output is kept (its last lines are in the error
of a failed step) and goes to ``progress`` only with ``verbose``. The plugin is checked against
the installed CLI: it must be one of its source types (venvs are looked up by a recipe's
``source.type``), and it becomes a pip extra only where the CLI has that extra (``file`` has none).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from executor.errors import BadInputError
from executor.sandbox.environment import CREDENTIAL_NAMES, build_env
from executor.sandbox.identity import RunAs
from executor.sandbox.stoppable import run_lines
from executor.sandbox.venv_cache import FileLock
from executor.sandbox.venv_owner import as_user_prefix, hand_over, take_back, write_new_file
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
                 stop: threading.Event | None = None, step_timeout_s: float = STEP_TIMEOUT_S,
                 verbose: bool = False, run_as: RunAs | None = None) -> None:
        self.python = python
        self.run_as = run_as
        """Run every step as this user (a ``run_as`` pool's recipe user); None: as the executor."""
        self.pip_args = tuple(pip_args)
        self.stop = stop
        """Set by the task when it stops: the step running is killed, the build raises ``Stopped``."""
        self.step_timeout_s = step_timeout_s
        self.verbose = verbose

    def build(self, target: Path, request: VenvRequest, progress: Progress) -> None:
        """Create ``target`` and install the request into it; raise with pip's last lines on failure."""
        steps = 4 if request.extra_requirements else 3
        say = _Steps(steps, progress)
        say("create the venv" + (f" (building as {self.run_as.name})" if self.run_as else ""))
        if self.run_as is not None:
            hand_over(target, self.run_as)
        create = [self.python, "-m", "venv", "--without-pip", str(target)]
        self._run(create, progress, "create the venv", target)
        bare = "acryl-datahub" if request.version == LATEST else f"acryl-datahub=={request.version}"
        say(f"install {bare} alone, to read its plugins and constraints")
        self._pip(target, ["--no-deps", bare], progress, f"pip install {bare}")
        cli = read_cli_info(target, self._prefix())
        requirement = cli_requirement(request, cli, progress)
        self._install_constrained(target, requirement, say, progress)
        if request.extra_requirements:
            say(f"install the extra requirements: {', '.join(request.extra_requirements)}")
            reqs = target / "extra-requirements.txt"  # 0644: pip reads it as run_as too
            write_new_file(reqs, "\n".join(request.extra_requirements) + "\n")
            self._pip(target, ["-r", str(reqs)], progress, "pip install the extra requirements")
            os.unlink(reqs)
        if self.run_as is not None:
            take_back(target)
        if not (target / "bin" / "datahub").exists():
            raise BadInputError(f"the build of {target} produced no bin/datahub")

    def _read(self, path: Path) -> str:
        """A text file of the venv: as ``run_as`` when it built it (a planted link then leads only
        where that user could read anyway)."""
        if self.run_as is None:
            return path.read_text()
        done = subprocess.run([*self._prefix(), "/bin/cat", "--", str(path)], capture_output=True,
                              timeout=60, check=False, env={"PATH": os.defpath})
        if done.returncode != 0:
            raise BadInputError(f"cannot read {path} as {self.run_as.name}: {done.stderr.decode()[-300:]}")
        return done.stdout[:MAX_CONSTRAINTS_BYTES].decode("utf-8", "replace")

    def _prefix(self) -> list[str]:
        """The exec wrapper's command that runs a step as ``run_as`` (empty: as the executor)."""
        return [] if self.run_as is None else as_user_prefix(self.run_as)

    def _env(self, target: Path) -> dict[str, str]:
        """The executor's environment without its credentials; as ``run_as``, the recipe's allowlist
        (plus pip's own settings, an index and its certificates) with HOME in the venv being built."""
        if self.run_as is None:
            return {k: v for k, v in os.environ.items() if k not in CREDENTIAL_NAMES}
        pip_settings = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
        env = build_env(os.environ, {}, pip_settings, home=target)
        env["PIP_NO_CACHE_DIR"] = "1"  # HOME is the venv: no cache left in it
        env.pop("TMPDIR")  # the system's (pip's build dirs are its own, 0700)
        return env

    def _install_constrained(self, target: Path, requirement: str, say: Progress, progress: Progress) -> None:
        """Install under the constraints the CLI ships, without pins this index cannot serve.

        A shipped pin can name a release the index no longer has (yanked and re-released as
        ``.post1``, or a private index that never mirrored it); pip then reports the pin as
        unsatisfiable. Only those pins are dropped, each named in a progress line, and the
        install runs again under all the others: never a silent install without constraints.
        """
        shipped = next(iter(target.glob("lib/python*/site-packages/datahub/constraints.txt")), None)
        if shipped is None:
            say(f"install {requirement} (the CLI ships no constraints)")
            self._pip(target, [requirement], progress, f"pip install {requirement}")
            return
        constraints = target / "datahub-constraints.txt"
        text = runtime_constraints(self._read(shipped))
        say(f"install {requirement} under the CLI's constraints")
        for _ in range(MAX_UNSERVED_PINS):
            write_new_file(constraints, text)
            try:
                self._pip(target, [requirement, "--constraint", str(constraints)], progress,
                          f"pip install {requirement} under the shipped constraints")
                return
            except PipFailed as exc:
                unserved = unserved_pins(exc.output, text)
                if not unserved:
                    raise
                progress(f"the index does not offer {', '.join(unserved)} (pinned by the CLI's constraints); "
                         "installing with those left unpinned")
                text = without_pins(text, unserved)
        raise BadInputError(f"more than {MAX_UNSERVED_PINS} pins of the CLI's constraints cannot be served "
                            "by this index; check the index (PIP_INDEX_URL) or pass --cli-version")

    def _pip(self, target: Path, args: list[str], progress: Progress, step: str) -> None:
        command = [self.python, "-m", "pip", "--disable-pip-version-check", "--python",
                   str(target / "bin" / "python"), "install", *self.pip_args, *args]
        self._run(command, progress, step, target)

    def _run(self, command: list[str], progress: Progress, step: str, target: Path | None = None) -> None:
        env = self._env(target if target is not None else Path(command[-1]))
        env["PIP_PROGRESS_BAR"] = "off"
        if self.verbose:
            progress("$ " + " ".join(command[2:] if command[1] == "-m" else command))
        command = [*self._prefix(), *command]
        tail: list[str] = []

        def on_line(line: str) -> None:
            if self.verbose:
                progress(line)
            tail[:] = [*tail[-(TAIL_LINES - 1):], line]

        code = run_lines(command, env, on_line, self.stop, self.step_timeout_s, f"venv build step '{step}'")
        if code != 0:
            last = "\n".join(tail)
            raise PipFailed(f"venv build step '{step}' failed (exit {code}):\n{last}", tail)


class PipFailed(BadInputError):
    """A build step failed; ``output`` holds pip's last lines (to tell an unserved pin from the rest)."""

    def __init__(self, message: str, output: list[str]) -> None:
        super().__init__(message)
        self.output = output


class _Steps:
    """``[n/N] what``: one progress line per build step."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total = total
        self.done = 0
        self.progress = progress

    def __call__(self, what: str) -> None:
        self.done += 1
        self.progress(f"[{self.done}/{self.total}] {what}")


SOURCE_GROUP = "datahub.ingestion.source.plugins"
_CLI_INFO = f"""
import importlib.metadata as m, json
d = m.distribution("acryl-datahub")
print(json.dumps({{"version": d.version, "extras": d.metadata.get_all("Provides-Extra") or [],
                  "requires": d.requires or [],
                  "sources": sorted(e.name for e in d.entry_points if e.group == "{SOURCE_GROUP}")}}))
"""


@dataclass(frozen=True)
class CliInfo:
    """What an installed acryl-datahub offers: its version, pip extras, requirements, source types."""

    version: str
    extras: frozenset[str]
    requires: tuple[str, ...]
    sources: frozenset[str]


def read_cli_info(target: Path, prefix: Sequence[str] = ()) -> CliInfo:
    """The acryl-datahub in the venv at ``target``, read from its metadata (nothing is imported).

    The venv's interpreter starts (and runs any ``.pth`` file a package installed): a venv
    built as a recipe user is read through ``prefix`` (the exec wrapper switching to it), with
    an empty environment.
    """
    env = {"PATH": os.defpath} if prefix else None
    done = subprocess.run([*prefix, str(target / "bin" / "python"), "-c", _CLI_INFO], capture_output=True,
                          text=True, timeout=60, check=False, env=env)
    if done.returncode != 0:
        raise BadInputError(f"acryl-datahub is not installed in {target}")
    data = json.loads(done.stdout)
    return CliInfo(str(data["version"]), frozenset(data["extras"]), tuple(data["requires"]),
                   frozenset(data["sources"]))


def cli_requirement(request: VenvRequest, cli: CliInfo, progress: Progress) -> str:
    """``acryl-datahub[extras]==version`` with only extras the CLI has; the plugin must be a source type.

    A ``file`` source needs no extra, and a sink such as ``datahub-rest`` is not a source: no
    request can use a venv named after it, so building one is refused with the reason.
    """
    if cli.sources and request.plugin not in cli.sources:
        known = ", ".join(sorted(cli.sources)[:12])
        raise BadInputError(
            f"{request.plugin!r} is not a source type of acryl-datahub {cli.version}: venvs are looked up "
            f"by a recipe's source.type, so no request could use this one "
            f"(source types include: {known}, ...)")
    wanted = list(dict.fromkeys((request.plugin, *request.extra_plugins)))
    unknown = [p for p in wanted if p not in cli.extras and p != request.plugin]
    if unknown:
        progress(f"acryl-datahub {cli.version} has no extra {', '.join(unknown)}; left out")
    extras = [p for p in wanted if p in cli.extras]
    return f"acryl-datahub[{','.join(extras)}]=={cli.version}" if extras else f"acryl-datahub=={cli.version}"


INSTALLER_PACKAGES = frozenset({"pip", "setuptools", "wheel", "uv"})
MAX_CONSTRAINTS_BYTES = 4 * 1024 * 1024
MAX_UNSERVED_PINS = 10
"""Rounds of dropping unservable pins before the build gives up."""
TAIL_LINES = 40
_UNSERVED = (
    re.compile(r"\(constraint\) ([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;,]+)"),
    re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;,]+)"),
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def unserved_pins(output: Sequence[str], constraints: str) -> list[str]:
    """``name==version`` pins of ``constraints`` that pip's ``output`` says it could not satisfy."""
    pinned = {_canonical(line.split(";")[0].split("==")[0].strip()): line.split(";")[0].strip()
              for line in constraints.splitlines() if "==" in line and not line.lstrip().startswith("#")}
    found: list[str] = []
    for line in output:
        for pattern in _UNSERVED:
            for name, _version in pattern.findall(line):
                pin = pinned.get(_canonical(name))
                if pin is not None and pin not in found:
                    found.append(pin)
    return found


def without_pins(constraints: str, pins: Sequence[str]) -> str:
    """``constraints`` without the lines of ``pins`` (their ``# via`` comments may stay)."""
    names = {_canonical(p.split("==")[0]) for p in pins}
    kept = [line for line in constraints.splitlines()
            if line.lstrip().startswith("#") or "==" not in line
            or _canonical(line.split(";")[0].split("==")[0].strip()) not in names]
    return "\n".join(kept) + "\n"


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
    return read_cli_info(target).version


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
    return isinstance(plugins, list) and plugin in plugins and same_version and _runnable(venv)


def _runnable(venv: Path) -> bool:
    """``bin/datahub``'s interpreter exists: a venv records absolute paths and breaks when moved."""
    try:
        with (venv / "bin" / "datahub").open("rb") as script:
            first = script.readline(4096)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return True  # not a script: nothing recorded
    interpreter = first[2:].strip().split(b" ")[0].decode(errors="replace")
    return Path(interpreter).exists()


def ensure_bundled_venv(root: Path, plugin: str, cli_version: str | None = None,
                        progress: Progress | None = None, builder: VenvBuilder | None = None) -> Path:
    """``<root>/<plugin>-bundled``: reused when its metadata matches, else (re)built with pip.

    ``cli_version`` defaults to the acryl-datahub installed beside the executor, else latest.
    Builds in place (venvs are not relocatable) under a lock; ``metadata.json`` is written
    last, so a venv without it is an unfinished build and is rebuilt.
    """
    say = progress or (lambda _line: None)
    version = cli_version or installed_datahub_version() or LATEST
    root = root.resolve()  # the venv records its own path: build where it really is, not via a link
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

