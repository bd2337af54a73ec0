"""Entry point of ``remote-executor``: builds the argument parser from the command modules.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
sub-commands and sets ``func(args) -> int`` on them. Modules import heavy or optional
dependencies (moto, graphql, the local control plane) inside their command functions, so that
``remote-executor run`` works with the base install alone and never loads
``executor.local.controlplane``; a command that needs an extra says which (``executor.cli.extras``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from executor import __version__
from executor.exitcodes import ExitCode

COMMAND_MODULES = (
    "executor.cli.service",
    "executor.cli.tools",
    "executor.cli.local",
    "executor.sandbox.venv_commands",
    "executor.observability.doctor_command",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; a command module that is not present yet is skipped."""
    parser = argparse.ArgumentParser(
        prog="remote-executor",
        description="Self-hosted executor for DataHub metadata ingestion.",
    )
    parser.add_argument("--version", action="version", version=f"remote-executor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return int(ExitCode.CONFIG)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
