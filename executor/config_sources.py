"""Where configuration values come from: the YAML file, ``${ENV}`` references, and env vars.

Precedence, lowest first: built-in defaults, the file, then env vars. DataHub's own env vars
(PROTOCOL.md) keep their names; settings DataHub has no name for use ``REMOTE_EXECUTOR_``.
Pool-level env vars apply to every pool. ``DATAHUB_EXECUTOR_POOL_ID`` forms the one pool when
the file defines none (a file's own pool list is never rewritten by it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from executor.errors import ConfigError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# env var -> path in the config data (global settings)
GLOBAL_ENV = {
    "DATAHUB_GMS_URL": ("gms", "url"),
    "DATAHUB_GMS_TOKEN": ("gms", "token"),
    "REMOTE_EXECUTOR_GMS_TOKEN_FILE": ("gms", "token_file"),
    "REMOTE_EXECUTOR_STATE_DIR": ("state_dir",),
    "REMOTE_EXECUTOR_WORK_DIR": ("work_dir",),
    "REMOTE_EXECUTOR_LOG_FORMAT": ("logging", "format"),
    "REMOTE_EXECUTOR_LOG_LEVEL": ("logging", "level"),
    "REMOTE_EXECUTOR_OBSERVABILITY_HOST": ("observability", "host"),
    "REMOTE_EXECUTOR_OBSERVABILITY_PORT": ("observability", "port"),
    "REMOTE_EXECUTOR_HEARTBEAT_FILES": ("observability", "heartbeat_files"),
    "REMOTE_EXECUTOR_DRAIN_S": ("shutdown", "drain_s"),
}

# env var -> path inside each pool
POOL_ENV = {
    "DATAHUB_EXECUTOR_INGESTION_MAX_WORKERS": ("max_workers",),
    "DATAHUB_EXECUTOR_INGESTION_SIGNAL_POLL_INTERVAL": ("signal_poll_interval_s",),
    "DATAHUB_EXECUTOR_FILE_SECRET_BASEDIR": ("secrets", "file_dir"),
    "DATAHUB_BUNDLED_VENV_PATH": ("venvs", "bundled_root"),
    "INGESTION_DEPENDENCY_RESOLUTION_ENABLED": ("venvs", "dependency_resolution"),
    "REMOTE_EXECUTOR_RUN_AS": ("run_as", "user"),
    "REMOTE_EXECUTOR_ISOLATION": ("isolation",),
}

POOL_ID_ENV = ("DATAHUB_EXECUTOR_POOL_ID", "DATAHUB_EXECUTOR_WORKER_ID")
CREDENTIAL_NAME = "gms-token"
"""File name of the token under systemd's ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``)."""


def merged_sources(path: str | os.PathLike[str] | None, env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Return a description of the sources and the merged raw data, ready for validation."""
    data: dict[str, Any] = {}
    source = "environment"
    if path is not None and str(path).endswith(".env"):
        env = {**env, **read_env_file(Path(path))}
        _overlay_env(data, env)
        return f"{path} (env file)", data
    if path is not None:
        source = str(path)
        data = read_yaml(Path(path))
        data = expand_references(data, env, source)
    _overlay_env(data, env)
    return (f"{source} (+ environment)" if path is not None else source), data


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse the file; a missing file or a YAML error becomes a ConfigError naming the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(path), [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["<top level>: expected a mapping of settings"])
    return data


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, optional quotes), as docker's ``--env-file`` reads."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(str(path), [f"line {number}: expected NAME=VALUE"])
        values[key.strip()] = value.strip().strip("'\"")
    return values


def expand_references(value: Any, env: dict[str, str], source: str, where: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string value (not in keys).

    Expansion happens after parsing, so a value can never inject YAML structure.
    """
    if isinstance(value, dict):
        return {k: expand_references(v, env, source, _join(where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_references(v, env, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(source, [f"{where}: references ${{{name}}}, which is not set"])

    return _REF.sub(substitute, value)


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _overlay_env(data: dict[str, Any], env: dict[str, str]) -> None:
    for name, path in GLOBAL_ENV.items():
        if env.get(name):
            _set(data, path, env[name])
    if "token" not in data.get("gms", {}) and "token_file" not in data.get("gms", {}):
        creds = env.get("CREDENTIALS_DIRECTORY")
        if creds and (Path(creds) / CREDENTIAL_NAME).is_file():
            _set(data, ("gms", "token_file"), str(Path(creds) / CREDENTIAL_NAME))
    if not data.get("pools"):
        pool_id = next((env[n] for n in POOL_ID_ENV if env.get(n)), None)
        if pool_id is not None or "DATAHUB_GMS_URL" in env:
            data["pools"] = [{"id": pool_id or "default"}]
    pools = data.get("pools")
    if isinstance(pools, list):
        for pool in pools:
            if isinstance(pool, dict):
                for name, path in POOL_ENV.items():
                    if env.get(name):
                        _set(pool, path, env[name])


def _set(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value
