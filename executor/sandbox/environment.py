"""The environment a recipe runs with: built from an allowlist, never from the executor's own.

The executor's environment holds its GMS token and possibly the host's AWS credentials; a
recipe must see neither. So only the names below pass from the executor (PATH, locale,
time zone, proxies, CA bundles, locked-index settings), then the pool's defaults, then the
request's ``extra_env_vars``; HOME and TMPDIR point into the private work dir. A variable
whose value equals one of the executor's own credentials (those still in ``base``, and those
``executor.hardening`` took out of the environment at start-up) is dropped whatever its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from loguru import logger

from executor.hardening import own_credentials

ALLOWED_FROM_EXECUTOR = frozenset({
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "all_proxy",
    "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
    # Locked images point these at nowhere; passing them keeps a recipe's pip locked too.
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "UV_INDEX_URL", "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL", "UV_OFFLINE",
})
"""Names copied from the executor's own environment when set."""

CREDENTIAL_NAMES = frozenset({
    "DATAHUB_GMS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
})
"""The executor's own credentials: their values never reach a recipe under any name."""

FORBIDDEN_NAMES = frozenset({"LD_PRELOAD", "LD_AUDIT", "HOME", "TMPDIR"})
"""Names a pool or a request may not set (loader injection; HOME/TMPDIR are the work dir)."""

BASE_DEFAULTS: Mapping[str, str] = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "utf-8",
    "DATAHUB_TELEMETRY_ENABLED": "false",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
}
"""What the datahub CLI needs to stream its log and stay quiet; pool defaults may override."""


def build_env(base: Mapping[str, str], defaults: Mapping[str, str], extra: Mapping[str, str],
              home: Path) -> dict[str, str]:
    """The recipe's environment: allowlisted ``base`` < built-ins < pool ``defaults`` < request ``extra``.

    ``base`` is normally ``os.environ``. HOME and TMPDIR are ``home`` and ``home/tmp``.
    """
    env: dict[str, str] = dict(BASE_DEFAULTS)
    env.update({k: base[k] for k in ALLOWED_FROM_EXECUTOR if k in base})  # a few lookups, not a scan
    for source, layer in (("pool env", defaults), ("extra_env_vars", extra)):
        for name, value in layer.items():
            if not _valid_name(name) or name in FORBIDDEN_NAMES or "\0" in str(value):
                logger.warning("{}: variable {!r} is not allowed in a recipe's environment; ignored",
                               source, name)
                continue
            env[name] = str(value)
    env["HOME"] = str(home)
    env["TMPDIR"] = str(home / "tmp")
    return _without_credentials(env, base)


def _without_credentials(env: dict[str, str], base: Mapping[str, str]) -> dict[str, str]:
    own = {base[name] for name in CREDENTIAL_NAMES if base.get(name)} | own_credentials()
    leaked = sorted(name for name, value in env.items() if value in own)
    for name in leaked:
        logger.warning("variable {} would pass one of the executor's own credentials to a recipe; dropped",
                       name)
        del env[name]
    return env


def _valid_name(name: str) -> bool:
    return bool(name) and "=" not in name and "\0" not in name and not name[0].isdigit()
