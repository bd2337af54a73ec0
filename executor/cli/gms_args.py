"""How the user tools reach DataHub: ``--gms``, ``--token`` / ``--token-file`` and the env vars.

The client is the executor's own ``GmsClient``. The token is never printed; prefer
``DATAHUB_GMS_TOKEN`` or ``--token-file`` over ``--token``, which other users of the host
can read in the process list.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from executor.config import checked_token
from executor.datahub.gms import GmsClient
from executor.errors import ConfigError, ExecutorError
from executor.exitcodes import ExitCode

CLIENT_TIMEOUT_S = 15.0


def add_gms_args(parser: argparse.ArgumentParser) -> None:
    """The options every user tool takes."""
    parser.add_argument("--gms", default=None, help="GMS URL (default: $DATAHUB_GMS_URL)")
    parser.add_argument("--token", default=None, help="token (default: $DATAHUB_GMS_TOKEN; visible in ps)")
    parser.add_argument("--token-file", default=None, help="read the token from this file")


def open_client(args: argparse.Namespace) -> GmsClient:
    """A client from the options and env vars; ConfigError says what is missing."""
    gms = args.gms or os.environ.get("DATAHUB_GMS_URL")
    given, source = _token(args)
    token = checked_token(given, source) if given else None
    if not gms:
        raise ConfigError("--gms", ["no GMS URL: pass --gms or set DATAHUB_GMS_URL"])
    if not token:
        raise ConfigError("--token", ["no token: pass --token-file, set DATAHUB_GMS_TOKEN or pass --token"])
    return GmsClient(gms, token, timeout_s=CLIENT_TIMEOUT_S)


def _token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token as given and where it came from (named in an error, never the value): a file
    or an env var exported from one often ends in a newline, which the check strips."""
    if args.token_file:
        try:
            return Path(args.token_file).read_text(), args.token_file
        except OSError as exc:
            raise ConfigError(args.token_file, [f"cannot read the token file: {exc.strerror}"]) from None
    if args.token:
        return args.token, "--token"
    return os.environ.get("DATAHUB_GMS_TOKEN"), "DATAHUB_GMS_TOKEN"


def fail(message: str, code: ExitCode) -> int:
    """Print ``message`` on stderr; return ``code``."""
    sys.stderr.write(f"remote-executor: {message}\n")
    return int(code)


def with_client(args: argparse.Namespace, action: Callable[[GmsClient], int]) -> int:
    """Run ``action`` with a client; configuration mistakes exit 2, other errors 1."""
    try:
        with open_client(args) as client:
            return int(action(client))
    except ConfigError as exc:
        return fail(str(exc), ExitCode.CONFIG)
    except ExecutorError as exc:
        return fail(str(exc), ExitCode.FAILURE)
