"""Which Python environment runs a recipe: DataHub's venv policy.

* ``version == "bundled"``: ``<bundled_root>/<plugin>-bundled``, pre-built (``venv build``);
  it must hold ``bin/python`` and ``bin/datahub``.
* ``version == "native"``: the ``datahub`` CLI on the executor's own PATH.
* anything else (an exact version, ``latest``): a dynamic venv from the cache under the
  state dir (``executor.sandbox.venv_cache``), built once with pip.

Locked mode (``INGESTION_DEPENDENCY_RESOLUTION_ENABLED=false``, ``dependency_resolution:
false`` in a pool) refuses every version but ``bundled`` and never runs pip.

With ``VenvPolicy.run_as`` (a ``run_as`` pool) a dynamic venv is built as the recipe user
(``venv_build``, ``venv_owner``), never with the executor's privileges, in a cache the recipe
user can reach (outside the 0700 state dir; ``pool/sandboxing.py`` picks it).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from executor.errors import BadInputError, NotAllowedError
from executor.sandbox.identity import RunAs

BUNDLED = "bundled"
NATIVE = "native"
LATEST = "latest"
BUNDLED_ROOT_VAR = "DATAHUB_BUNDLED_VENV_PATH"
DEFAULT_BUNDLED_ROOT = Path("/opt/datahub/venvs")
LOCK_VAR = "INGESTION_DEPENDENCY_RESOLUTION_ENABLED"

Progress = Callable[[str], None]
_PLUGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+!-]{0,63}$")


def default_bundled_root(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """``$DATAHUB_BUNDLED_VENV_PATH`` or ``/opt/datahub/venvs``."""
    env = os.environ if environ is None else environ
    return Path(env.get(BUNDLED_ROOT_VAR) or DEFAULT_BUNDLED_ROOT)


def check_plugin(plugin: str) -> str:
    """A plugin name (the recipe's ``source.type``) safe to put in a path and a pip extra."""
    if not _PLUGIN.match(plugin):
        raise BadInputError(f"invalid plugin name {plugin!r} (letters, digits, '-', '_', '.')")
    return plugin


def check_version(version: str) -> str:
    """A CLI version: exact (``1.7.0.17``), ``latest``, ``bundled`` or ``native``."""
    if not _VERSION.match(version):
        raise BadInputError(f"invalid acryl-datahub version {version!r}")
    return version


@dataclass(frozen=True)
class VenvRequest:
    """What a task asks for: the source plugin, the CLI version and extra packages."""

    plugin: str
    version: str = BUNDLED
    extra_plugins: tuple[str, ...] = ()
    extra_requirements: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_plugin(self.plugin)
        check_version(self.version)
        for extra in self.extra_plugins:
            check_plugin(extra)

    def requirement(self, version: str | None = None) -> str:
        """``acryl-datahub[plugin,extras]==version`` (no pin for ``latest``)."""
        extras = ",".join(dict.fromkeys((self.plugin, *self.extra_plugins)))
        chosen = version or self.version
        pin = "" if chosen == LATEST else f"=={chosen}"
        return f"acryl-datahub[{extras}]{pin}"


class VenvBuilder(Protocol):
    """Builds a venv for ``request`` at ``target`` (which does not exist yet); raises on failure."""

    def build(self, target: Path, request: VenvRequest, progress: Progress) -> None: ...


@dataclass(frozen=True)
class VenvPolicy:
    """A pool's venv settings. ``cache_dir`` is where dynamic venvs live (under the state dir)."""

    bundled_root: Path = DEFAULT_BUNDLED_ROOT
    dependency_resolution: bool = True
    cache_dir: Path | None = None
    cache_max_bytes: int = 10 * 1024**3
    run_as: RunAs | None = None
    """Build dynamic venvs as this user (a ``run_as`` pool's recipe user); None: as the executor."""


@dataclass(frozen=True)
class ResolvedVenv:
    """The environment a run uses; ``release`` frees a cached venv for eviction after the run."""

    kind: Literal["bundled", "native", "dynamic"]
    path: Path
    datahub: Path
    release: Callable[[], None] = lambda: None

    def ingest_argv(self, debug: bool = False) -> list[str]:
        """``datahub [--debug] ingest run -c - --report-to {report_file}`` for ``SandboxSpec``."""
        return [str(self.datahub), *(["--debug"] if debug else []), "ingest", "run", "-c", "-",
                "--report-to", "{report_file}"]


def bundled_venv_path(root: Path, plugin: str) -> Path:
    """``<root>/<plugin>-bundled``."""
    return root / f"{check_plugin(plugin)}-bundled"


def find_bundled_venv(root: Path, plugin: str) -> ResolvedVenv:
    """The bundled venv of ``plugin``; a clear error naming the path when it is missing or incomplete."""
    path = bundled_venv_path(root, plugin)
    base = os.fspath(path)  # looked at twice a task (its spec, the warm spare's): no Path per look
    missing = [name for name in ("bin/python", "bin/datahub") if not os.path.exists(f"{base}/{name}")]
    if missing:
        raise BadInputError(
            f"no bundled venv for plugin {plugin!r}: {path} lacks {' and '.join(missing)}; "
            f"build it with 'remote-executor venv build --plugin {plugin} --root {root}'")
    return ResolvedVenv("bundled", path, Path(f"{base}/bin/datahub"))


def resolve_venv(request: VenvRequest, policy: VenvPolicy, builder: VenvBuilder | None = None,
                 progress: Progress | None = None, stop: threading.Event | None = None) -> ResolvedVenv:
    """Pick (and for dynamic versions build or reuse) the venv for ``request`` under ``policy``.

    Raises ``NotAllowedError`` in locked mode for any version but ``bundled``, and
    ``BadInputError`` for a missing bundled venv or native CLI. Once ``stop`` is set, a build
    or a wait for one ends with ``executor.sandbox.stoppable.Stopped``.
    """
    if request.version == BUNDLED:
        return find_bundled_venv(policy.bundled_root, request.plugin)
    if not policy.dependency_resolution:
        raise NotAllowedError(
            f"version {request.version!r} is not allowed: dependency resolution is disabled "
            f"({LOCK_VAR}=false), so only 'bundled' venvs run here")
    if request.version == NATIVE:
        found = shutil.which("datahub")
        if found is None:
            raise BadInputError("version 'native' needs a datahub CLI on the executor's PATH; none found")
        datahub = Path(found)
        return ResolvedVenv("native", datahub.parent.parent, datahub)
    if policy.cache_dir is None:
        raise NotAllowedError(f"version {request.version!r} needs a dynamic venv, but no venv cache is set")
    from executor.sandbox.venv_build import PipVenvBuilder
    from executor.sandbox.venv_cache import VenvCache

    chosen = builder if builder is not None else PipVenvBuilder(stop=stop, run_as=policy.run_as)
    cache = VenvCache(policy.cache_dir, policy.cache_max_bytes, stop=stop)
    if policy.run_as is not None:  # the recipe user passes through to its venvs; locks stay private
        for directory in (cache.root, cache.root / "store"):
            os.chmod(directory, 0o711)  # noqa: S103 (traverse only)
    lease = cache.acquire(request, chosen, progress)
    return ResolvedVenv("dynamic", lease.path, lease.path / "bin" / "datahub", lease.release)
