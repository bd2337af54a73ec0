"""``remote-executor controlplane``: run the local control plane (GMS subset + SQS + STS).

The control plane is a stand-in for trying and testing, in ``executor.local.controlplane``; it needs
the ``local`` extra and is imported only when this command runs, so a production install
(``run``, ``check``, ``doctor``, the user tools) never loads it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from executor.cli.extras import LOCAL, LOCAL_MODULES, needs_extra
from executor.cli.gms_args import fail
from executor.errors import FinalError
from executor.exitcodes import ExitCode


def register(subparsers: Any) -> None:
    """Add ``controlplane``."""
    cp = subparsers.add_parser(
        "controlplane", help="run the stand-in control plane for trying and testing (needs the 'local' extra)"
    )
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
    demo = subparsers.add_parser("demo", help="run a real recipe through a local control plane and executor")
    demo.add_argument(
        "--venv-root",
        type=Path,
        default=Path(os.environ.get("DATAHUB_BUNDLED_VENV_PATH", ".cache/venvs")),
        help="where the bundled venv with the datahub CLI is built or reused (default: .cache/venvs)",
    )
    demo.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run")
    demo.add_argument("--keep", action="store_true",
                      help="keep the run's state dir (logs, control plane state) instead of removing it")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """``demo``: lives with the stand-in (``executor.local.demo``), loaded only when it runs."""
    from executor.local.demo.command import cmd_demo

    return cmd_demo(args)


@needs_extra(LOCAL, LOCAL_MODULES)
def run_controlplane(args: argparse.Namespace) -> int:
    """``controlplane``: start, print where it is, write ``--info-file``, wait for a signal."""
    from executor.local.controlplane.crypto import load_key
    from executor.local.controlplane.server import ControlPlane
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
        return fail(str(exc), ExitCode.CONFIG)
    except OSError as exc:  # e.g. the port is taken
        return fail(f"cannot start the control plane: {exc}", ExitCode.CONFIG)
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
