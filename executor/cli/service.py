"""``remote-executor run`` and ``remote-executor check``: the service and its config check.

Both give one verdict on the configuration *for this host*: the file and env vars must be
valid, the token readable and the state dir usable. Every problem is one line naming its
source and field; any problem means exit 2 (``ExitCode.CONFIG``), before anything starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from executor.cli.state_dir import inspect_state_dir, prepare_state_dir
from executor.config import ExecutorConfig, load_config
from executor.errors import ConfigError
from executor.exitcodes import ExitCode

DEFAULT_CONFIG = Path("/etc/remote-executor/config.yaml")
CONFIG_ENV = "REMOTE_EXECUTOR_CONFIG"
HINT = " (visible only under the unit; by hand: REMOTE_EXECUTOR_GMS_TOKEN_FILE=FILE remote-executor check)"
"""A token passed with LoadCredential= is not there when a person runs ``check``: say how to check."""


def register(subparsers: Any) -> None:
    """Add ``run`` and ``check``."""
    run = subparsers.add_parser("run", help="run the executor in the foreground")
    _config_arg(run)
    run.add_argument(
        "--once", action="store_true", help="take one task, run it, report, exit with its status"
    )
    run.set_defaults(func=cmd_run)
    check = subparsers.add_parser("check", help="validate the configuration and print it (secrets masked)")
    _config_arg(check)
    check.set_defaults(func=cmd_check)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"YAML config (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG} if present, else env vars only)",
    )


def config_path(arg: str | None) -> str | None:
    """The config file to read, or None for env vars only."""
    if arg:
        return arg
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    return str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None


def source_of(path: str | None) -> str:
    """How ``check`` names where the configuration came from."""
    return f"{path} (+ environment)" if path else "environment"


def problems_on_this_host(config: ExecutorConfig, create: bool) -> list[str]:
    """What stops ``run`` here though the file is valid: the token and the state dir.

    ``create``: make the state dir and write a probe (``run``), or only inspect it (``check``).
    """
    problems: list[str] = []
    try:
        config.gms.resolved_token()
    except ConfigError as exc:
        problems += [p if p.startswith(exc.source) else f"{exc.source}: {p}" for p in exc.problems]
        if config.gms.token is None and config.gms.token_file is None:
            problems[-1] += HINT
    state = prepare_state_dir(config.state_dir) if create else inspect_state_dir(config.state_dir)
    if state:
        problems.append(state)
    return problems


def load_checked(arg: str | None, create: bool) -> ExecutorConfig:
    """The config, valid and usable on this host; one ConfigError listing every problem."""
    path = config_path(arg)
    config = load_config(path)
    problems = problems_on_this_host(config, create)
    if problems:
        raise ConfigError(source_of(path), problems)
    return config


def cmd_check(args: argparse.Namespace) -> int:
    """One verdict: the effective config (token masked) and OK, or every problem and exit 2."""
    try:
        config = load_checked(args.config, create=False)
    except ConfigError as exc:
        print(f"remote-executor: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    print(json.dumps(config.masked(), indent=2))
    print(f"configuration OK: {len(config.pools)} pool(s)", file=sys.stderr)
    return int(ExitCode.OK)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the service until a signal; exit codes in ``executor.exitcodes``."""
    from executor import hardening, scheduling

    hardening.make_undumpable()  # first: before any thread or child exists
    from executor.footprint import limit_malloc_arenas

    limit_malloc_arenas()  # before the actors' threads allocate (executor.footprint)
    from executor.logs import setup_logging
    from executor.observability import HealthState, Metrics
    from executor.service import Service

    try:
        config = load_checked(args.config, create=True)
        token = config.gms.resolved_token()
    except ConfigError as exc:
        print(f"remote-executor: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    setup_logging(config.logging.format, config.logging.level)
    if config.batch_scheduling:
        scheduling.run_as_batch()  # before the tree's threads, which inherit it
    hardening.take_credentials()  # the config holds what it needs; recipes must not inherit them
    hardening.register([token])
    hardening.protect_paths([config_path(args.config), config.gms.token_file])
    try:
        hardening.secure_state_dir(config.state_dir)
    except OSError as exc:
        print(f"remote-executor: state_dir {config.state_dir}: {exc.strerror}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    service = Service(config, token, health=HealthState(), metrics=Metrics(), once=args.once)
    service.install_signal_handlers()
    service.start()
    return int(service.run_until_stopped())
