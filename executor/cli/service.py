"""``remote-executor run`` and ``remote-executor check``: the service and its config check."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from executor.config import ExecutorConfig, load_config
from executor.errors import ConfigError
from executor.exitcodes import ExitCode

DEFAULT_CONFIG = Path("/etc/remote-executor/config.yaml")
CONFIG_ENV = "REMOTE_EXECUTOR_CONFIG"


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


def load_or_explain(arg: str | None) -> ExecutorConfig | None:
    """Load the config; on error print what is wrong (file, field, expectation) and return None."""
    try:
        return load_config(config_path(arg))
    except ConfigError as exc:
        print(f"remote-executor: {exc}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    """Print the effective config with the token masked; exit 2 when invalid."""
    config = load_or_explain(args.config)
    if config is None:
        return int(ExitCode.CONFIG)
    try:
        config.gms.resolved_token()
    except ConfigError as exc:  # valid config, but this host cannot read the token (yet)
        print(f"remote-executor: warning: {exc}; `run` will refuse to start here", file=sys.stderr)
    print(json.dumps(config.masked(), indent=2))
    print(f"configuration OK: {len(config.pools)} pool(s)", file=sys.stderr)
    return int(ExitCode.OK)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the service until a signal; exit codes in ``executor.exitcodes``."""
    from executor import hardening

    hardening.make_undumpable()  # first: before any thread or child exists
    from executor.logs import setup_logging
    from executor.observability import HealthState, Metrics
    from executor.service import Service

    config = load_or_explain(args.config)
    if config is None:
        return int(ExitCode.CONFIG)
    setup_logging(config.logging.format, config.logging.level)
    try:
        token = config.gms.resolved_token()
    except ConfigError as exc:
        print(f"remote-executor: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
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
