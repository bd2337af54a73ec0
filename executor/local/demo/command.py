"""``remote-executor demo``: a control plane, an executor and a real recipe, on this machine.

It shows the whole path a DataHub user sees: a secret and an ingestion source are created
through DataHub's GraphQL API, a run is requested, the executor leases the pool's queue,
resolves the secret, runs the real ``datahub`` CLI in its sandbox, and reports back.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from executor.cli.extras import LOCAL, LOCAL_MODULES, needs_extra
from executor.exitcodes import ExitCode

DEMO_POOL = "demo"
SECRET_NAME = "DEMO_SINK_TOKEN"  # noqa: S105 (a secret's name, not a value)
HERE = Path(__file__).resolve().parent


@needs_extra(LOCAL, LOCAL_MODULES)
def cmd_demo(args: argparse.Namespace) -> int:
    """Build or reuse the venv, start everything, run the recipe, print the outcome."""
    from loguru import logger

    from executor.local.controlplane.server import ControlPlane
    from executor.logs import setup_logging
    from executor.sandbox.venv_build import ensure_bundled_venv

    setup_logging("text", "WARNING")
    venv_root = args.venv_root.resolve()
    print(f"[demo] bundled venv for the 'file' source under {venv_root}", flush=True)
    ensure_bundled_venv(venv_root, "file", progress=lambda line: print(f"[venv] {line}", flush=True))
    state = Path(tempfile.mkdtemp(prefix="remote-executor-demo-"))
    logger.add(state / "executor.log", level="INFO", enqueue=False)
    control_plane = ControlPlane(pools=(DEMO_POOL,), state_dir=str(state / "controlplane")).start()
    print(f"[demo] control plane (GMS subset + SQS/STS) at {control_plane.gms_url}", flush=True)
    try:
        return _run(control_plane, venv_root, state, args.timeout)
    finally:
        control_plane.stop()
        if not args.keep:
            logger.remove()  # closes the executor log in the directory about to go
            shutil.rmtree(state, ignore_errors=True)
            print(f"[demo] removed {state} (run with --keep to keep its logs)", flush=True)
        else:
            print(f"[demo] kept {state}; delete it when done", flush=True)


def _run(control_plane: Any, venv_root: Path, state: Path, timeout_s: float) -> int:
    from executor.cli.follow import follow
    from executor.cli.ingestion import Submission, set_secret, submit
    from executor.datahub.gms import GmsClient
    from executor.observability import HealthState, Metrics
    from executor.service import Service

    service = Service(_config(control_plane, venv_root, state), control_plane.token, HealthState(), Metrics())
    service.start()
    print(f"[demo] executor started for pool {DEMO_POOL!r}; state in {state / 'executor'}", flush=True)
    try:
        with GmsClient(control_plane.gms_url, control_plane.token) as client:
            set_secret(client, SECRET_NAME, control_plane.token)
            print(f"[demo] secret {SECRET_NAME} stored in the control plane (the recipe references it)")
            recipe = state / "recipe.yml"
            recipe.write_text(
                (HERE / "recipe.yml")
                .read_text()
                .format(metadata_file=HERE / "shop_metadata.json", gms_url=control_plane.gms_url)
            )
            urn = submit(client, Submission(recipe, pool=DEMO_POOL, name="demo-shop", version="bundled"))
            print(f"[demo] requested {urn}; following it:", flush=True)
            code = follow(client, urn, sys.stdout, poll_s=1.0, timeout_s=timeout_s)
    finally:
        print("[demo] stopping the executor", flush=True)
        service.shutdown()
    datasets = {urn for urn, _, _ in control_plane.list_aspects(entity_type="dataset")}
    aspects = len(control_plane.list_aspects(entity_type="dataset"))
    request_id = urn.rsplit(":", 1)[-1]
    print(f"[demo] final status: {'SUCCESS' if code == ExitCode.OK else code.name}")
    print(f"[demo] ingested {aspects} aspects of {len(datasets)} datasets into the control plane")
    print(f"[demo] task log: {state / 'executor' / 'pools' / DEMO_POOL / 'logs' / f'{request_id}.log'}")
    print(f"[demo] executor log: {state / 'executor.log'}")
    return int(code)


def _config(control_plane: Any, venv_root: Path, state: Path) -> Any:
    from executor.config import ExecutorConfig

    return ExecutorConfig.model_validate(
        {
            "gms": {"url": control_plane.gms_url, "token": control_plane.token},
            "state_dir": str(state / "executor"),
            "observability": {"port": 0},
            "shutdown": {"drain_s": 30},
            "pools": [
                {
                    "id": DEMO_POOL,
                    "max_workers": 2,
                    "poll_wait_s": 2,
                    "progress_interval_s": 1,
                    "venvs": {"bundled_root": str(venv_root), "dependency_resolution": False},
                    "secrets": {"stores": ["datahub"]},
                }
            ],
        }
    )
