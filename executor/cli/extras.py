"""Commands that need an optional extra say which one, instead of a ``ModuleNotFoundError``.

A base install runs the service; the local control plane and the demo need the ``local`` extra
(setup.cfg). ``needs_extra`` wraps such a command: before it runs, the extra's modules are
looked up (without importing them), and a missing one ends the command with the install line
and exit code 2, because the fix is in the installation, not in the task.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from collections.abc import Callable, Mapping

from executor.exitcodes import ExitCode

Command = Callable[[argparse.Namespace], int]

LOCAL = "local"
LOCAL_MODULES = {"graphql": "graphql-core", "moto": "moto[server]"}
"""The modules of the ``local`` extra that the control plane imports, and their distributions."""


def missing_modules(modules: Mapping[str, str]) -> list[str]:
    """The distributions whose module cannot be found in this environment."""
    return [dist for module, dist in modules.items() if importlib.util.find_spec(module) is None]


def install_hint(extra: str) -> str:
    """How to add ``extra`` to an installation."""
    return (
        f"pip install 'remote-executor[{extra}]' "
        f"(from a checkout or a built wheel: pip install '<checkout or wheel>[{extra}]')"
    )


def needs_extra(extra: str, modules: Mapping[str, str]) -> Callable[[Command], Command]:
    """Decorate a command that cannot run without ``modules`` (from ``extra``)."""

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def run(args: argparse.Namespace) -> int:
            missing = missing_modules(modules)
            if missing:
                name = getattr(args, "command", None) or command.__name__
                sys.stderr.write(
                    f"remote-executor: `{name}` needs the '{extra}' extra, which is not installed "
                    f"(missing: {', '.join(missing)}).\nInstall it with: {install_hint(extra)}\n"
                )
                return int(ExitCode.CONFIG)
            return command(args)

        return run

    return decorate
