"""The user tools: ``submit``, ``status``, ``cancel`` and ``secret set``, for any DataHub.

They use only DataHub's GraphQL API, through the executor's ``GmsClient``; ``--gms`` and
``--token`` default to ``DATAHUB_GMS_URL`` / ``DATAHUB_GMS_TOKEN`` (``executor.cli.gms_args``).
A secret value is read from stdin, never from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from executor.cli.gms_args import add_gms_args, fail, with_client
from executor.datahub.gms import GmsClient
from executor.errors import FinalError
from executor.exitcodes import ExitCode

STATUS_TAIL = 20


def register(subparsers: Any) -> None:
    """Add the user tools to ``remote-executor``."""
    sub = subparsers.add_parser("submit", help="create/update an ingestion source from a recipe and run it")
    sub.add_argument("recipe", type=Path, help="recipe YAML file")
    add_gms_args(sub)
    sub.add_argument("--pool", required=True, help="executor pool (executorId) to run on")
    sub.add_argument("--version", default=None, help="datahub CLI version for the run (e.g. bundled)")
    sub.add_argument("--name", default=None, help="ingestion source name (default: the file's stem)")
    sub.add_argument(
        "--wait", action="store_true", help="follow the run (and reruns) to the end; exit 0 only on SUCCESS"
    )
    sub.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    sub.set_defaults(func=run_submit)

    status = subparsers.add_parser("status", help="show an execution request: status, timings, cause, log")
    status.add_argument("urn", metavar="URN", help="execution request URN (or its id)")
    status.add_argument(
        "--lines", type=int, default=STATUS_TAIL, help=f"log lines shown (default {STATUS_TAIL})"
    )
    add_gms_args(status)
    status.set_defaults(func=run_status)

    cancel = subparsers.add_parser("cancel", help="ask for execution requests to be cancelled (KILL signal)")
    cancel.add_argument("urns", nargs="+", metavar="URN")
    add_gms_args(cancel)
    cancel.set_defaults(func=run_cancel)

    secret = subparsers.add_parser("secret", help="manage DataHub secrets")
    actions = secret.add_subparsers(dest="secret_action", metavar="ACTION", required=True)
    set_cmd = actions.add_parser("set", help="create or update a secret; the value is read from stdin")
    set_cmd.add_argument("name")
    add_gms_args(set_cmd)
    set_cmd.set_defaults(func=run_secret_set)


def run_submit(args: argparse.Namespace) -> int:
    """``submit``: print the request URN; with ``--wait`` follow it to its final result."""
    from executor.cli.follow import follow
    from executor.cli.ingestion import Submission, submit

    def action(client: GmsClient) -> int:
        urn = submit(client, Submission(args.recipe, args.pool, args.name, args.version))
        sys.stdout.write(urn + "\n")
        sys.stdout.flush()
        if not args.wait:
            return int(ExitCode.OK)
        try:
            return int(follow(client, urn, sys.stderr, timeout_s=args.timeout))
        except KeyboardInterrupt:
            sys.stderr.write(f"stopped watching; the run goes on (remote-executor status {urn})\n")
            return int(ExitCode.INTERRUPTED)

    return with_client(args, action)


def run_status(args: argparse.Namespace) -> int:
    """``status URN``: describe the request; 1 when GMS has no such request."""
    from executor.cli.ingestion import get_request, request_urn
    from executor.cli.status import describe

    def action(client: GmsClient) -> int:
        request = get_request(client, request_urn(args.urn))
        sys.stdout.write("".join(f"{line}\n" for line in describe(request, max(0, args.lines))))
        return int(ExitCode.OK)

    return with_client(args, action)


def run_cancel(args: argparse.Namespace) -> int:
    """``cancel``: write a KILL signal for each URN that may still run; non-zero if any failed."""
    from executor.cli.ingestion import cancel, request_urn

    def action(client: GmsClient) -> int:
        failed = 0
        for given in args.urns:
            try:
                urn = request_urn(given)
                final = cancel(client, urn)
            except FinalError as exc:
                failed += 1
                sys.stderr.write(f"remote-executor: {given}: {exc}\n")
                continue
            if final is None:
                sys.stdout.write(f"cancel requested: {urn}\n")
            else:
                sys.stdout.write(f"not cancelled: {urn} had already finished with {final}\n")
        return int(ExitCode.FAILURE if failed else ExitCode.OK)

    return with_client(args, action)


def run_secret_set(args: argparse.Namespace) -> int:
    """``secret set NAME``: the value comes from stdin (one trailing newline is dropped)."""
    from executor.cli.ingestion import set_secret

    if sys.stdin.isatty():
        value = getpass.getpass(f"value for {args.name}: ")  # no echo on a terminal
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        return fail("the secret value read from stdin is empty", ExitCode.CONFIG)

    def action(client: GmsClient) -> int:
        sys.stdout.write(set_secret(client, args.name, value) + "\n")
        return int(ExitCode.OK)

    return with_client(args, action)
