"""``remote-executor doctor [-c FILE] [--plugin P ...]``: check every outbound path and the sandbox.

Exit codes: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 when the
configuration itself is invalid (the other checks then cannot run).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from executor.exitcodes import ExitCode


def register(subparsers: Any) -> None:
    """Add ``doctor``."""
    from executor.cli.service import _config_arg

    doctor = subparsers.add_parser(
        "doctor",
        help="check config, DNS, proxy, GMS and token, each pool's lease and SQS, venvs, sandbox",
        description="Run the troubleshooting guide's checks; one PASS/WARN/FAIL/SKIP line each, "
        "with the fix on WARN and FAIL. Exit 1 if any check fails, 2 if the config is invalid.",
    )
    _config_arg(doctor)
    doctor.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="P",
        help="a source type whose bundled venv must exist in every pool (repeatable)",
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="longest wait of each network check (5)"
    )
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run the checks, print one line each and a summary; exit 1 on any FAIL."""
    from executor.cli.service import config_path
    from executor.config import load_config
    from executor.errors import BadInputError, ConfigError
    from executor.observability.doctor import (
        DoctorOptions,
        Status,
        failed,
        passed,
        report,
        run_doctor,
        summary,
    )
    from executor.sandbox.venvs import check_plugin

    def out(line: str) -> None:
        print(line, flush=True)

    source = config_path(args.config) or "the environment (DATAHUB_* variables)"
    try:
        config = load_config(config_path(args.config))
        plugins = tuple(check_plugin(p) for p in args.plugin)
    except (ConfigError, BadInputError) as exc:
        fix = "correct the named field(s); `remote-executor check` shows the effective config"
        out(failed("config", " ".join(str(exc).split()), fix).line())
        return int(ExitCode.CONFIG)
    first = [passed("config", f"{source}: valid, pool(s) {', '.join(p.id for p in config.pools)}")]
    try:
        token = config.gms.resolved_token()
    except ConfigError as exc:
        token = ""
        first.append(failed("token", " ".join(str(exc).split()),
                            "set gms.token, gms.token_file, DATAHUB_GMS_TOKEN or LoadCredential=gms-token"))
    else:
        first.append(passed("token", "found (value not shown)"))
    options = DoctorOptions(plugins=plugins, timeout_s=args.timeout)
    checks = report(first, out)
    checks += report(run_doctor(config, token, options), out)
    print(summary(checks), file=sys.stderr, flush=True)
    return int(ExitCode.FAILURE if any(c.status is Status.FAIL for c in checks) else ExitCode.OK)
