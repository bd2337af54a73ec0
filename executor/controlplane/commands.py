"""Command-line entry points: ``controlplane``, ``submit``, ``cancel`` and ``secret set``.

``controlplane`` runs the local control plane until SIGINT/SIGTERM. The client commands use
only DataHub's GraphQL API, so they work against DataHub too; ``--gms`` / ``--token`` default
to ``DATAHUB_GMS_URL`` / ``DATAHUB_GMS_TOKEN``. A secret value is read from stdin, never from
the command line; prefer the env var or ``--token-file`` over ``--token``, which other users
of the host can see in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from executor.errors import ConfigError, ExecutorError, FinalError
from executor.exitcodes import ExitCode


def register(subparsers: Any) -> None:
    """Add the commands of this module to ``remote-executor``."""
    cp = subparsers.add_parser("controlplane", help="run the local control plane (GMS + SQS + STS)")
    cp.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    cp.add_argument("--port", type=int, default=0, help="GMS port (default: ephemeral)")
    cp.add_argument("--state", default=None, help="state directory (default: a temporary one)")
    cp.add_argument("--pool", action="append", default=None, help="pool id (repeatable; default: default)")
    cp.add_argument("--token", default=None, help="GMS token (default: random; visible in ps, prefer env)")
    cp.add_argument("--info-file", default=None, help="write URLs, token and pools here as JSON (0600)")
    cp.add_argument("--lease-seconds", type=float, default=3600, help="lifetime of leased credentials")
    cp.add_argument("--max-receives", type=int, default=5, help="receives before a message goes to the DLQ")
    cp.add_argument("--secret-key-file", default=None, help="key to encrypt secrets at rest")
    cp.set_defaults(func=run_controlplane)

    sub = subparsers.add_parser("submit", help="create/update an ingestion source from a recipe and run it")
    sub.add_argument("recipe", type=Path, help="recipe YAML file")
    _client_args(sub)
    sub.add_argument("--pool", required=True, help="executor pool (executorId) to run on")
    sub.add_argument("--version", default=None, help="datahub CLI version for the run (e.g. bundled)")
    sub.add_argument("--name", default=None, help="ingestion source name (default: the file's stem)")
    sub.add_argument("--wait", action="store_true", help="follow the run; exit 0 only on SUCCESS")
    sub.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    sub.set_defaults(func=run_submit)

    cancel = subparsers.add_parser("cancel", help="ask for execution requests to be cancelled (KILL signal)")
    cancel.add_argument("urns", nargs="+", metavar="URN")
    _client_args(cancel)
    cancel.set_defaults(func=run_cancel)

    secret = subparsers.add_parser("secret", help="manage DataHub secrets")
    actions = secret.add_subparsers(dest="secret_action", metavar="ACTION", required=True)
    set_cmd = actions.add_parser("set", help="create or update a secret; the value is read from stdin")
    set_cmd.add_argument("name")
    _client_args(set_cmd)
    set_cmd.set_defaults(func=run_secret_set)


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gms", default=None, help="GMS URL (default: $DATAHUB_GMS_URL)")
    parser.add_argument("--token", default=None, help="token (default: $DATAHUB_GMS_TOKEN; visible in ps)")
    parser.add_argument("--token-file", default=None, help="read the token from this file")


def _fail(message: str, code: ExitCode) -> int:
    sys.stderr.write(f"remote-executor: {message}\n")
    return int(code)


def _client(args: argparse.Namespace) -> Any:
    from executor.controlplane.client import GraphQLClient

    gms = args.gms or os.environ.get("DATAHUB_GMS_URL")
    token = args.token or os.environ.get("DATAHUB_GMS_TOKEN")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(args.token_file, [f"cannot read the token file: {exc.strerror}"]) from None
    if not gms:
        raise ConfigError("--gms", ["no GMS URL: pass --gms or set DATAHUB_GMS_URL"])
    if not token:
        raise ConfigError("--token", ["no token: pass --token-file, set DATAHUB_GMS_TOKEN or pass --token"])
    return GraphQLClient(gms, token)


def _run_client_command(args: argparse.Namespace, action: Any) -> int:
    try:
        with _client(args) as client:
            return int(action(client))
    except ConfigError as exc:
        return _fail(str(exc), ExitCode.CONFIG)
    except ExecutorError as exc:
        return _fail(str(exc), ExitCode.FAILURE)


def run_submit(args: argparse.Namespace) -> int:
    """``submit``: print the request URN; with ``--wait`` follow it to the end."""
    from executor.controlplane.submit import Submission, submit, watch

    def action(client: Any) -> int:
        urn = submit(client, Submission(args.recipe, args.pool, args.name, args.version))
        sys.stdout.write(urn + "\n")
        sys.stdout.flush()
        if not args.wait:
            return int(ExitCode.OK)
        try:
            return int(watch(client, urn, sys.stderr, timeout_s=args.timeout))
        except KeyboardInterrupt:
            sys.stderr.write(f"stopped watching; the run goes on (remote-executor cancel {urn})\n")
            return int(ExitCode.INTERRUPTED)

    return _run_client_command(args, action)


def run_cancel(args: argparse.Namespace) -> int:
    """``cancel``: write a KILL signal for each URN; non-zero if any failed."""
    from executor.controlplane.submit import cancel

    def action(client: Any) -> int:
        failed = 0
        for urn in args.urns:
            try:
                cancel(client, urn)
                sys.stdout.write(f"cancel requested: {urn}\n")
            except FinalError as exc:
                failed += 1
                sys.stderr.write(f"remote-executor: {urn}: {exc}\n")
        return int(ExitCode.FAILURE if failed else ExitCode.OK)

    return _run_client_command(args, action)


def run_secret_set(args: argparse.Namespace) -> int:
    """``secret set NAME``: the value comes from stdin (one trailing newline is dropped)."""
    from executor.controlplane.submit import set_secret

    if sys.stdin.isatty():
        value = getpass.getpass(f"value for {args.name}: ")  # no echo on a terminal
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        return _fail("the secret value read from stdin is empty", ExitCode.CONFIG)

    def action(client: Any) -> int:
        sys.stdout.write(set_secret(client, args.name, value) + "\n")
        return int(ExitCode.OK)

    return _run_client_command(args, action)


def run_controlplane(args: argparse.Namespace) -> int:
    """``controlplane``: start, print where it is, write ``--info-file``, wait for a signal."""
    from executor.controlplane.crypto import load_key
    from executor.controlplane.server import ControlPlane
    from executor.logs import setup_logging

    setup_logging()
    try:
        cp = ControlPlane(
            pools=tuple(args.pool or ("default",)),
            token=args.token or os.environ.get("REMOTE_EXECUTOR_CONTROLPLANE_TOKEN"),
            state_dir=args.state,
            host=args.host,
            port=args.port,
            lease_seconds=args.lease_seconds,
            max_receive_count=args.max_receives,
            secret_key=load_key(args.secret_key_file),
        ).start()
    except FinalError as exc:
        return _fail(str(exc), ExitCode.CONFIG)
    except OSError as exc:  # e.g. the port is taken
        return _fail(f"cannot start the control plane: {exc}", ExitCode.CONFIG)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        _announce(cp, args.info_file)
        while not stop.wait(1.0):
            pass
    finally:
        cp.stop()
        if args.info_file:
            Path(args.info_file).unlink(missing_ok=True)
    return int(ExitCode.OK)


def _announce(cp: Any, info_file: str | None) -> None:
    info = cp.info()
    sys.stdout.write(f"GMS URL: {info['gms_url']}\nToken: {info['token']}\n")
    sys.stdout.write(f"SQS endpoint (moto): {info['sqs_endpoint']}\nPools: {', '.join(info['pools'])}\n")
    if not info["secrets_encrypted"]:
        sys.stdout.write("Note: no secret key configured; secret values are stored unencrypted\n")
    sys.stdout.flush()
    if info_file:
        tmp = f"{info_file}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle, indent=2)
        os.replace(tmp, info_file)
