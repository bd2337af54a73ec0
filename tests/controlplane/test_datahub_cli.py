"""A real ``datahub ingest`` run (file source, datahub-rest sink) ingests into the control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph
from datahub.metadata.schema_classes import DatasetPropertiesClass, StatusClass

DATASET = "urn:li:dataset:(urn:li:dataPlatform:hive,warehouse.orders,PROD)"
DATAHUB = Path(sys.executable).parent / "datahub"


@pytest.mark.skipif(not DATAHUB.exists(), reason="the datahub console script is not installed next to python")
def test_datahub_ingest_with_the_rest_sink(control_plane: Any, tmp_path: Path) -> None:
    mcps = [
        {
            "entityType": "dataset",
            "entityUrn": DATASET,
            "changeType": "UPSERT",
            "aspectName": "datasetProperties",
            "aspect": {"json": {"description": "orders table", "customProperties": {"owner": "sales"}}},
        },
        {
            "entityType": "dataset",
            "entityUrn": DATASET,
            "changeType": "UPSERT",
            "aspectName": "status",
            "aspect": {"json": {"removed": False}},
        },
    ]
    (tmp_path / "mcps.json").write_text(json.dumps(mcps))
    # The token goes in through the environment, not the recipe file or argv.
    recipe = {
        "source": {"type": "file", "config": {"path": str(tmp_path / "mcps.json")}},
        "sink": {"type": "datahub-rest", "config": {"server": control_plane.gms_url, "token": "${CP_TOKEN}"}},
    }
    (tmp_path / "recipe.yml").write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "CP_TOKEN": control_plane.token, "DATAHUB_TELEMETRY_ENABLED": "false"}
    run = subprocess.run(
        [str(DATAHUB), "ingest", "-c", str(tmp_path / "recipe.yml")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    graph = DataHubGraph(DatahubClientConfig(server=control_plane.gms_url, token=control_plane.token))
    try:
        properties = graph.get_aspect(DATASET, DatasetPropertiesClass)
        status = graph.get_aspect(DATASET, StatusClass)
    finally:
        graph.close()
    assert properties is not None and properties.description == "orders table"
    assert properties.customProperties == {"owner": "sales"}
    assert status is not None and status.removed is False
    # The CLI's own run summary went through the same validation and landed too.
    results = [
        v
        for (_, aspect, v) in control_plane.list_aspects("dataHubExecutionRequest")
        if aspect.endswith("Result")
    ]
    assert [r["status"] for r in results] == ["SUCCESS"]
