"""What a pool's launcher puts in a run's spec: a task's, and the plain one a warm spare gets.

One function for both, so a spare (``executor.pool.warm``) is spawned with exactly the spec a
plain task of its venv would get (no ``--debug``, not a test connection, no task env or limit
overrides) and a task's spec compares equal to it field by field when it may adopt the spare.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from executor.hardening import protected_paths
from executor.pool.context import PoolContext
from executor.pool.outcome import TEST_CONNECTION
from executor.pool.warm import SPARE_ID, Spare, spare_key
from executor.sandbox import SandboxRun, SandboxSpec, build_env, limits_from_settings
from executor.sandbox.identity import RunAs, work_base
from executor.sandbox.venvs import ResolvedVenv, VenvPolicy, VenvRequest, resolve_venv
from executor.supervision.spare_threads import SPARES

REPORT_FILE = "report.json"
NO_ENV: Mapping[str, str] = {}
NO_HOME = Path("/nonexistent")
"""The home a spec's environment is built with: the run points HOME and TMPDIR at its work dir."""


def run_spec(pool: PoolContext, identity: tuple[RunAs | None, Path], venv: ResolvedVenv,
             task_id: str, log_file: Path | None, task: str = "RUN_INGEST", debug: bool = False,
             extra_env: Mapping[str, str] = NO_ENV) -> SandboxSpec:
    """The held run of ``venv``'s CLI for one task (``task_id``, its ``log_file``); the
    defaults give the plain run a warm spare holds."""
    limits = limits_from_settings(pool.pool.limits).with_task_overrides(extra_env)
    argv = venv.ingest_argv(debug)
    if task == TEST_CONNECTION:
        argv.append("--test-source-connection")
    env = plain_env(pool) if not extra_env else build_env(os.environ, pool.pool.env, extra_env, home=NO_HOME)
    run_as, work_root = identity
    return SandboxSpec(
        argv=argv,
        hold_input=True,  # the recipe and its secrets come with ``give_secrets``
        env=env,
        work_root=work_root,
        limits=limits,
        secrets=tuple(pool.credentials.values()),
        live_secrets=pool.credentials,  # a lease renewed mid-run is masked too
        log_file=log_file,
        task_id=task_id,
        report_file=REPORT_FILE,
        isolation=pool.pool.isolation,
        hide_paths=hidden_paths(pool) if pool.pool.isolation == "bwrap" else (),  # bwrap alone
        run_as=run_as,
    )


def plain_env(pool: PoolContext) -> Mapping[str, str]:
    """The environment of a run with no ``extra_env_vars``, built once per pool and shared,
    read-only: a warm spare's spec and its adopter's each built it (two lookups of every
    allowlisted name in ``os.environ`` and a credentials check, about 0.04 ms each), the same
    every time, as the executor's environment does not change after its start-up."""
    return pool.plain_env.get(lambda: MappingProxyType(build_env(os.environ, pool.pool.env, NO_ENV, NO_HOME)))


def make_spare(pool: PoolContext, identity: tuple[RunAs | None, Path], policy: VenvPolicy,
               venv_request: VenvRequest) -> Spare:
    """On a spare thread: the plain held run of the venv, spawned (``warm.WarmSpare``)."""
    venv = resolve_venv(venv_request, policy)
    spec = run_spec(pool, identity, venv, SPARE_ID, None)
    run = SandboxRun(spec, spawner=pool.spawner)
    with SPARES.following():  # its supervisor follows on this thread: one wake-up less
        run.start(here=True)  # (``here`` never waits for the supervisor)
    return Spare(run, venv, spare_key(spec), venv_request)


def hidden_paths(pool: PoolContext) -> tuple[Path, ...]:
    """What a bwrap'd recipe must not see even where a system tree holds it (``sandbox.isolation``
    shows only an allowlist; these are blanked in case they lie inside one of its trees)."""
    config = pool.config
    paths = [config.state_dir, work_base(config.state_dir, config.work_dir),
             pool.pool.secrets.file_dir, Path("/etc/remote-executor"), *protected_paths()]
    if config.gms.token_file is not None:
        paths.append(config.gms.token_file)
    return tuple(dict.fromkeys(paths))
