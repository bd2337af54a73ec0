"""``remote-executor venv build`` and ``remote-executor venv list``: the bundled venvs.

``build`` makes ``<root>/<plugin>-bundled`` with pip (one progress line per step on stderr,
pip's own output only with ``--verbose``) and writes
``metadata.json`` with the plugins and the CLI version, as DataHub's image builder does;
``list`` shows what a root holds and whether each venv is usable. The root defaults to
``$DATAHUB_BUNDLED_VENV_PATH``, else ``/opt/datahub/venvs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from executor.errors import ExecutorError
from executor.exitcodes import ExitCode


def register(subparsers: Any) -> None:
    """Add ``venv build`` and ``venv list``."""
    venv = subparsers.add_parser("venv", help="build or list bundled venvs (<root>/<plugin>-bundled)")
    commands = venv.add_subparsers(dest="venv_command", metavar="COMMAND")
    build = commands.add_parser("build", help="build <root>/<plugin>-bundled with pip")
    build.add_argument("--plugin", action="append", required=True, metavar="P",
                       help="source plugin, e.g. snowflake (repeat or comma-separate for several)")
    build.add_argument("--cli-version", metavar="V",
                       help="acryl-datahub version (default: the one beside the executor, else latest)")
    build.add_argument("--verbose", action="store_true",
                       help="show pip's own output (by default one progress line per step)")
    _root_arg(build)
    build.set_defaults(func=cmd_build)
    listing = commands.add_parser("list", help="list the bundled venvs under the root")
    _root_arg(listing)
    listing.set_defaults(func=cmd_list)
    venv.set_defaults(func=lambda _args: _usage(venv))


def _root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="DIR", type=Path,
                        help="bundled venv root (default: $DATAHUB_BUNDLED_VENV_PATH or /opt/datahub/venvs)")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return int(ExitCode.CONFIG)


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    """Build each requested plugin's venv; exit 1 naming the first that failed."""
    from executor.sandbox.venv_build import PipVenvBuilder, ensure_bundled_venv
    from executor.sandbox.venvs import check_plugin, default_bundled_root

    root: Path = args.root or default_bundled_root()
    plugins = [p.strip() for value in args.plugin for p in value.split(",") if p.strip()]
    try:
        for plugin in plugins:
            check_plugin(plugin)
    except ExecutorError as exc:
        print(f"remote-executor venv build: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    for plugin in plugins:
        print(f"building {plugin}-bundled under {root}", file=sys.stderr, flush=True)
        try:
            path = ensure_bundled_venv(root, plugin, args.cli_version, progress=_progress,
                                       builder=PipVenvBuilder(verbose=args.verbose))
        except (ExecutorError, OSError) as exc:
            print(f"remote-executor venv build: {plugin}: {exc}", file=sys.stderr)
            return int(ExitCode.FAILURE)
        print(path)
    return int(ExitCode.OK)


def cmd_list(args: argparse.Namespace) -> int:
    """One line per ``*-bundled`` venv: name, CLI version, plugins, and ok or what is missing."""
    from executor.sandbox.venv_build import read_metadata
    from executor.sandbox.venvs import default_bundled_root

    root: Path = args.root or default_bundled_root()
    venvs = sorted(p for p in root.glob("*-bundled") if p.is_dir()) if root.is_dir() else []
    if not venvs:
        print(f"no bundled venvs under {root}")
        return int(ExitCode.OK)
    for venv in venvs:
        meta = read_metadata(venv) or {}
        missing = [n for n in ("bin/python", "bin/datahub", "metadata.json") if not (venv / n).exists()]
        state = "ok" if not missing else "incomplete: no " + ", ".join(missing)
        plugins = meta.get("plugins")
        shown = ",".join(str(p) for p in plugins) if isinstance(plugins, list) else "?"
        print(f"{venv.name}\tcli {meta.get('cli_version', '?')}\tplugins {shown}\t{state}")
    return int(ExitCode.OK)
