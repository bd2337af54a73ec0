"""``doctor``'s source checks: can each pool's bundled venvs run the sources it is asked to run?

A pool runs the ingestion sources whose ``executorId`` is its id; a ``bundled`` request runs
``<bundled_root>/<source type>-bundled``. A venv that exists but lacks the source's plugin (or
its dependencies) fails every run of that source, so for each source type asked of a pool (and
each ``--plugin``) the venv's own Python loads the plugin's entry point, as the CLI would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from executor.config import ExecutorConfig, PoolSettings
from executor.errors import ExecutorError, NotAllowedError
from executor.observability.doctor import Check, DoctorOptions, failed, passed, skipped, warned
from executor.sandbox.venvs import BUNDLED, bundled_venv_path

LIST_SOURCES = """
query listIngestionSources($input: ListIngestionSourcesInput!) {
  listIngestionSources(input: $input) {
    total
    ingestionSources { urn name config { recipe executorId version } }
  }
}
"""
PAGE = 100
LOAD_TIMEOUT_S = 120.0
"""Importing a source plugin (and its client libraries) can take a while on a cold disk."""
PROBE = """
import importlib.metadata as m, sys
found = [e for e in m.entry_points(group="datahub.ingestion.source.plugins") if e.name == sys.argv[1]]
if not found:
    sys.exit("acryl-datahub " + m.version("acryl-datahub") + " has no source plugin " + repr(sys.argv[1]))
found[0].load()
"""


@dataclass(frozen=True)
class SourceUse:
    """One ingestion source a pool runs: its name, source type and CLI version."""

    name: str
    source_type: str | None
    version: str


def list_pool_sources(gms: Any, pool_id: str) -> list[SourceUse]:
    """The ingestion sources GMS dispatches to ``pool_id`` (``listIngestionSources``, paged)."""
    uses: list[SourceUse] = []
    start = 0
    while True:
        data = gms.graphql(LIST_SOURCES, {"input": {"start": start, "count": PAGE}}, "listIngestionSources")
        page = (data.get("listIngestionSources") or {}).get("ingestionSources") or []
        for source in page:
            config = source.get("config") or {}
            if config.get("executorId") == pool_id:
                uses.append(SourceUse(str(source.get("name")), _source_type(config.get("recipe")),
                                      str(config.get("version") or "")))
        start += len(page)
        if not page or start >= int((data.get("listIngestionSources") or {}).get("total") or 0):
            return uses


def _source_type(recipe: object) -> str | None:
    """``source.type`` of a recipe given as a JSON (or YAML) string; None when unreadable."""
    try:
        parsed = json.loads(recipe) if isinstance(recipe, str) else None
    except (ValueError, RecursionError):  # GMS's text: nested too deep is unreadable too
        try:
            parsed = yaml.safe_load(recipe) if isinstance(recipe, str) else None
        except (yaml.YAMLError, RecursionError):
            return None
    source = parsed.get("source") if isinstance(parsed, Mapping) else None
    kind = source.get("type") if isinstance(source, Mapping) else None
    return kind if isinstance(kind, str) and kind else None


def source_checks(
    config: ExecutorConfig, pool: PoolSettings, token: str, reachable: bool, options: DoctorOptions
) -> Iterator[Check]:
    """One line per source type a pool needs: its bundled venv loads that source plugin."""
    from executor.observability.doctor_network import gms_client

    name = f"pool {pool.id}: sources"
    uses: list[SourceUse] = []
    if not reachable:
        yield skipped(name, "GMS is not reachable or refused the token")
    else:
        try:
            with gms_client(config, token, options.timeout_s) as gms:
                uses = list_pool_sources(gms, pool.id)
        except NotAllowedError as exc:
            yield warned(name, f"cannot list ingestion sources with this token ({exc})",
                         "name the source types this pool runs with --plugin")
        except ExecutorError as exc:
            yield warned(name, f"cannot list ingestion sources: {exc}",
                         "name the source types this pool runs with --plugin")
        else:
            yield passed(name, _describe(uses))
    yield from _plugin_checks(pool, uses, options.plugins)


def _describe(uses: list[SourceUse]) -> str:
    if not uses:
        return "no ingestion source runs on this pool yet"
    kinds = sorted({u.source_type or "?" for u in uses})
    return f"{len(uses)} ingestion source(s) run here, source type(s): {', '.join(kinds)}"


def _plugin_checks(pool: PoolSettings, uses: list[SourceUse], plugins: tuple[str, ...]) -> Iterator[Check]:
    """Each needed source type, once: locked pools refuse unbundled versions; venvs must load it."""
    needed: dict[str, list[str]] = {p: ["--plugin"] for p in plugins}
    locked = not pool.venvs.dependency_resolution
    untyped: list[str] = []
    refused: list[str] = []
    for use in uses:
        version = use.version or pool.venvs.default_version
        if use.source_type is None:
            untyped.append(use.name)
        elif version != BUNDLED and locked:
            refused.append(f"{use.name} ({version})")
        elif version == BUNDLED:
            needed.setdefault(use.source_type, []).append(use.name)
    if untyped:
        yield failed(f"pool {pool.id}: recipes", f"no source.type in the recipe of: {', '.join(untyped)}",
                     "fix those recipes in DataHub")
    if refused:
        yield failed(f"pool {pool.id}: versions",
                     f"the pool is locked (bundled venvs only), but these ask for a CLI version: "
                     f"{', '.join(refused)}",
                     "set their CLI version to 'bundled' in DataHub, or allow dependency resolution")
    for source_type, users in sorted(needed.items()):
        yield plugin_check(pool, source_type, users)


def plugin_check(pool: PoolSettings, source_type: str, users: list[str]) -> Check:
    """``<root>/<type>-bundled`` exists and its Python loads the ``source_type`` plugin."""
    name = f"pool {pool.id}: venv {source_type}"
    root = pool.venvs.bundled_root
    venv = bundled_venv_path(root, source_type)
    build = f"remote-executor venv build --plugin {source_type} --root {root}"
    wanted_by = ", ".join(users[:3]) + (" ..." if len(users) > 3 else "")
    python = venv / "bin" / "python"
    if not python.exists() or not (venv / "bin" / "datahub").exists():
        return failed(name, f"no usable bundled venv {venv} (wanted by: {wanted_by})", build)
    problem = _load_problem(python, source_type)
    if problem:
        return failed(name, f"{venv} cannot load the {source_type!r} source: {problem}", "rebuild: " + build)
    return passed(name, f"{venv.name} loads the {source_type!r} source (wanted by: {wanted_by})")


def _load_problem(python: Path, source_type: str) -> str:
    """Empty when the venv's Python imports the plugin; else the last line of what went wrong."""
    try:
        done = subprocess.run([str(python), "-c", PROBE, source_type], capture_output=True, text=True,
                              timeout=LOAD_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
                              env={"PATH": "/usr/bin:/bin", "DATAHUB_TELEMETRY_ENABLED": "false"})
    except subprocess.TimeoutExpired:
        return f"loading it took more than {LOAD_TIMEOUT_S:.0f}s"
    except OSError as exc:
        return f"cannot run {python}: {exc.strerror}"
    if done.returncode == 0:
        return ""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit {done.returncode}"
