"""The executor's configuration: frozen, validated values, loaded from YAML and/or env vars.

One file may describe several pools; with no file, DataHub's own env vars form a one-pool
config, and they override a file where both are given (``executor.config_sources`` holds that
mapping). Errors name the file, the field path (``pools[1].limits.memory_mb``) and what was
expected. The GMS token is a ``SecretStr``: it never shows up in a repr, a log or ``check``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from executor.errors import ConfigError

SECRET_STORE_KINDS = ("env", "file", "datahub", "aws-secrets-manager")
_ACCOUNT = r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GmsSettings(_Frozen):
    """How to reach DataHub GMS."""

    url: str = Field(pattern=r"^https?://[^\s/]+")
    token: SecretStr | None = None
    token_file: Path | None = None
    verify_tls: bool = True
    ca_bundle: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    def resolved_token(self) -> str:
        """The token from ``token`` or ``token_file``, stripped (a Kubernetes secret's trailing
        newline); raises ConfigError when there is none or it cannot be a header's value."""
        if self.token is not None:
            return checked_token(self.token.get_secret_value(), "gms.token")
        if self.token_file is not None:
            try:
                return checked_token(self.token_file.read_text(), "gms.token_file")
            except OSError as exc:
                raise ConfigError(
                    "gms.token_file", [f"cannot read {self.token_file}: {exc.strerror}"]
                ) from None
        raise ConfigError(
            "gms",
            [
                "gms.token: no token; set gms.token, gms.token_file, DATAHUB_GMS_TOKEN, "
                "or systemd's LoadCredential=gms-token:FILE"
            ],
        )


def checked_token(token: str, source: str) -> str:
    """``token`` stripped; ConfigError naming ``source`` (never the value) when what is left
    holds a control or non-ASCII character, which no ``Authorization`` header can carry."""
    token = token.strip()
    if not token.isascii() or not token.isprintable():
        raise ConfigError(source, [f"{source}: the token holds a control or non-ASCII character"])
    return token


class ProxySettings(_Frozen):
    """Explicit proxies; when absent, the standard HTTP(S)_PROXY / NO_PROXY env vars apply."""

    https: str | None = None
    http: str | None = None
    no_proxy: str | None = None

    def as_requests_proxies(self) -> dict[str, str]:
        """The mapping requests and botocore take."""
        return {k: v for k, v in (("https", self.https), ("http", self.http)) if v}


class LoggingSettings(_Frozen):
    """Log format (``auto``: text on a terminal, JSON lines otherwise) and level."""

    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ObservabilitySettings(_Frozen):
    """The health/metrics endpoint and the optional file heartbeats of DataHub's chart."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9087, ge=0, le=65535)
    heartbeat_files: bool = False
    liveness_file: Path = Path("/tmp/worker_liveness_heartbeat")
    readiness_file: Path = Path("/tmp/worker_readiness_heartbeat")


class ShutdownSettings(_Frozen):
    """How long running tasks may finish after SIGTERM (below k8s' 150 s and the unit's stop timeout)."""

    drain_s: float = Field(default=120.0, ge=0, le=3600)
    kill_grace_s: float = Field(default=10.0, ge=0, le=600)


class LimitSettings(_Frozen):
    """Per-task resource limits; ``None`` means unlimited."""

    memory_mb: int | None = Field(default=4096, gt=0)
    cpu_seconds: float | None = Field(default=None, gt=0)
    wall_seconds: float | None = Field(default=86400.0, gt=0)
    max_processes: int | None = Field(default=256, gt=0)
    output_mb: int | None = Field(default=1024, gt=0)
    open_files: int = Field(default=4096, gt=0)
    disk_mb: int | None = Field(default=None, gt=0)
    kill_grace_s: float = Field(default=10.0, ge=0, le=600)


class VenvSettings(_Frozen):
    """Where recipes' Python environments come from."""

    bundled_root: Path = Path("/opt/datahub/venvs")
    dependency_resolution: bool = True
    """False is DataHub's *locked* mode: only ``bundled`` venvs, never pip."""
    default_version: str = "bundled"
    cache_mb: int = Field(default=10240, gt=0)


class AwsSecretsSettings(_Frozen):
    """The AWS Secrets Manager store (uses the host's own AWS identity, not the leased one)."""

    region: str | None = None
    prefix: str = ""


class EnvStoreSettings(_Frozen):
    """Which of the executor's environment variables the ``env`` store may hand to recipes.

    Nothing by default. A name is served if it is listed in ``names`` or starts with one of
    ``prefixes``; the executor's own credential variables never are, and a variable whose value
    equals one of its credentials is refused whatever its name.
    """

    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _plain(self) -> EnvStoreSettings:
        for name in self.names:
            if not name.isidentifier():
                raise ValueError(f"names: {name!r} is not a variable name")
        for prefix in self.prefixes:
            if not prefix or not prefix.replace("_", "a").isalnum():
                raise ValueError(f"prefixes: {prefix!r} must be a non-empty start of a variable name")
        return self


class SecretSettings(_Frozen):
    """Stores consulted in order; a later store's value wins, as in DataHub."""

    stores: tuple[str, ...] = ("env", "file", "datahub")
    file_dir: Path = Path("/mnt/secrets")
    aws: AwsSecretsSettings = AwsSecretsSettings()
    env: EnvStoreSettings = EnvStoreSettings()

    @model_validator(mode="after")
    def _known_stores(self) -> SecretSettings:
        for kind in self.stores:
            if kind not in SECRET_STORE_KINDS:
                raise ValueError(f"unknown secret store {kind!r}; expected one of {SECRET_STORE_KINDS}")
        return self


class RunAsSettings(_Frozen):
    """The unprivileged user (and group) a pool's recipes run as, instead of the executor's.

    ``user`` is a name or a numeric uid; ``group`` a name or gid (default: the user's primary
    group). Supplementary groups are dropped. Needs CAP_SETUID, CAP_SETGID (the switch), CAP_KILL
    (stopping the recipe), CAP_CHOWN (handing it its work dir) and CAP_DAC_OVERRIDE (reading
    back and removing what it wrote); ``doctor`` says when the executor lacks them.
    """

    user: str = Field(min_length=1, max_length=64, pattern=_ACCOUNT)
    group: str | None = Field(default=None, min_length=1, max_length=64, pattern=_ACCOUNT)


class PoolSettings(_Frozen):
    """One executor pool: its queue lease, capacity, limits, venvs and secret stores."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    max_workers: int = Field(default=4, ge=1, le=256)
    prefetch: int = Field(default=0, ge=0, le=16)
    """Requests taken beyond ``max_workers`` while every slot is busy (Celery's prefetch).

    A prefetched request's Task reads its input and waits for a slot (its message kept invisible
    meanwhile), so the next recipe starts without a receive and an input read in between. The cost:
    it waits here even when another executor of the pool is idle, for as long as the run before
    it lasts. 0 (the default) takes only what the free slots can start now.
    """
    poll_wait_s: int = Field(default=20, ge=0, le=20)
    """How long one SQS receive waits for a message (the long poll; SQS allows 20 s).

    A long poll answers as soon as a message is there, so a longer wait costs no latency, only
    fewer empty receives at rest (each a few ms of CPU); the poller's stop cuts the wait short,
    and while it holds messages it waits at most a third of ``visibility_s``.
    """
    visibility_s: int = Field(default=300, ge=10, le=43200)
    """The SQS lease on a received message, extended every third of it while the request is ours.

    10 s is the floor: the poller shortens its long poll to a third of the lease while it holds
    messages, and its other SQS calls time out within seconds, so an extension is never late by
    more than a third. Short leases hand the work of a killed executor on sooner; each costs one
    ChangeMessageVisibility call per message every third of it.
    """
    signal_poll_interval_s: float = Field(default=2.0, gt=0, le=60)
    progress_interval_s: float = Field(default=5.0, gt=0, le=300)
    running_after_s: float = Field(default=0.0, ge=0, le=300)
    """How long a recipe runs before its first RUNNING goes out (at most one progress interval);
    0, the default: at admission.

    With more, a run that ends sooner reports only its result: one GMS write instead of two.
    The price: for that long a duplicate of the message received by another executor is not
    turned away as RUNNING elsewhere and runs a second time (the fault suite's duplicate test
    caught it at 1 s), so raise it only where one executor serves the pool. More than
    ``progress_interval_s`` is refused: a run must look live to a duplicate's check in time.
    """
    warm_spare: bool = True
    """Keep one recipe process of the pool spawned ahead of the next task (docs/sandbox.md,
    "The warm spare"): its interpreter and CLI are up, without input, when the task comes, so a
    task whose run is the plain run of the last task's venv starts without the CLI's start-up.
    On by default: the CLI's start-up (seconds for the real one) is most of a short task's
    pickup. The cost: one idle process per pool, holding its start-up memory, for up to 30 s
    after the pool's last task (and one spawn wasted when the next task's run differs); it takes
    no worker slot. It is spawned only while no pool of the executor runs a recipe outside
    ``bwrap`` or builds a venv (docs/sandbox.md, "Its exposure"). ``false`` where memory is
    tighter than pickup matters."""
    limits: LimitSettings = LimitSettings()
    venvs: VenvSettings = VenvSettings()
    secrets: SecretSettings = SecretSettings()
    isolation: Literal["process", "bwrap"] = "process"
    """``bwrap``: recipes also get a read-only host view, private /tmp and /proc (needs bubblewrap)."""
    run_as: RunAsSettings | None = None
    """Run recipes as this user (docs/security.md); None: as the executor's own user."""
    env: dict[str, str] = Field(default_factory=lambda: {"DATAHUB_TELEMETRY_ENABLED": "false"})
    """Variables every recipe of this pool gets unless its request sets them."""

    @field_validator("running_after_s")
    @classmethod
    def _running_in_time(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("progress_interval_s")
        if interval is not None and value > interval:
            raise ValueError(f"must not exceed progress_interval_s ({interval:g}): a run must report "
                             "RUNNING within one progress interval")
        return value


class ExecutorConfig(_Frozen):
    """The whole, validated configuration of one executor process."""

    gms: GmsSettings
    proxy: ProxySettings = ProxySettings()
    state_dir: Path = Path("/var/lib/remote-executor")
    work_dir: Path | None = None
    """Where recipes' work dirs go: ``<state_dir>/pools/<id>/work`` by default, or, for a pool with
    ``run_as``, ``<state_dir>-work/<id>`` (outside the 0700 state dir, which its uid cannot enter)."""
    logging: LoggingSettings = LoggingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    batch_scheduling: bool = True
    """The executor's own threads under ``SCHED_BATCH`` (a woken thread never preempts another:
    fewer context switches per task); recipes keep the host's policy (``executor.scheduling``)."""
    pools: tuple[PoolSettings, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_pools(self) -> ExecutorConfig:
        ids = [p.id for p in self.pools]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"pool ids must be unique; repeated: {', '.join(duplicates)}")
        return self

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data with the token masked, for ``check``."""
        data = self.model_dump(mode="json")
        if self.gms.token is not None:
            data["gms"]["token"] = "********"  # noqa: S105 (a mask)
        return data


def load_config(path: str | os.PathLike[str] | None, environ: dict[str, str] | None = None) -> ExecutorConfig:
    """Read ``path`` (or nothing) and the env vars into an ``ExecutorConfig``; raise ``ConfigError``."""
    from executor.config_sources import merged_sources

    env = dict(os.environ if environ is None else environ)
    source, data = merged_sources(path, env)
    try:
        config = ExecutorConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        raise ConfigError(source, [_describe(e) for e in errors if not _follows(e, errors)]) from None
    return config


def _follows(err: Any, errors: list[Any]) -> bool:
    """A list that is too short only because its items failed (pydantic counts after validation):
    the items' own errors say it all, and "should have at least 1 item" would be a false extra."""
    loc = tuple(err.get("loc", ()))
    return err.get("type") == "too_short" and any(
        len(other.get("loc", ())) > len(loc) and tuple(other["loc"][: len(loc)]) == loc for other in errors
    )


def _describe(err: Any) -> str:
    """One line per problem: the dotted/indexed field path, what was wrong, what was given."""
    path = ""
    for part in err.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = err.get("msg", "invalid")
    given = err.get("input")
    secret = "token" in path or err.get("type") == "missing"
    shown = "" if secret or isinstance(given, dict | list) else f" (got {given!r})"
    return f"{path or '<top level>'}: {message}{shown}"
