"""One end-to-end row with the real ``datahub`` CLI: a ``file`` -> ``file`` recipe of the demo data.

The CLI lives in ``.cache/venvs/file-bundled`` (built once with the executor's own venv builder,
about 15 s, and shared with the tests); the row times the GraphQL create call and the SQS send
to the delivered SUCCESS, through the same one-worker executor as the stand-in rows.
"""

from __future__ import annotations

import json
import time

from bench.stats import Figures
from bench.world import ROOT, World
from executor.sandbox.venv_build import ensure_bundled_venv

DEMO_DATA = ROOT / "executor" / "local" / "demo" / "shop_metadata.json"
ROW = "real datahub CLI, file -> file: {} -> SUCCESS delivered"
CREATE_SOURCE = "mutation($input: UpdateIngestionSourceInput!) { createIngestionSource(input: $input) }"


def real_cli_row(world: World, figures: Figures, runs: int) -> None:
    """``runs`` end-to-end runs (none when 0)."""
    if runs <= 0:
        return
    print("bench: the real datahub CLI's venv (.cache/venvs/file-bundled; built once)", flush=True)
    venv = ensure_bundled_venv(ROOT / ".cache" / "venvs", "file")
    link = world.venv_root / "file-bundled"
    if not link.exists():
        link.symlink_to(venv.resolve())
    recipe = {
        "source": {"type": "file", "config": {"path": str(DEMO_DATA)}},
        "sink": {"type": "file", "config": {"filename": str(world.tmp / "real-cli-out.json")}},
    }
    source_input = {
        "name": "bench real cli",
        "type": "file",
        "config": {"recipe": json.dumps(recipe), "version": "bundled", "executorId": "default"},
    }
    source = str(world.graphql(CREATE_SOURCE, {"input": source_input})["createIngestionSource"])
    server = world.sqs_server("default")
    for _ in range(runs):
        urn, created = world.submit(source)
        world.wait_result(urn, timeout_s=180)
        done = time.time()
        figures.add(ROW.format("create"), "executor", (done - created) * 1000, "ms", server)
        figures.add(
            ROW.format("SQS send"), "executor", (done - world.sent[urn]) * 1000, "ms", server
        )
