"""What a pool's launcher puts in a run's spec: the paths bubblewrap must blank are looked up
for a bwrap pool's runs only (a process-isolated run has no view to blank them in)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from executor.pool.sandboxing import SandboxLauncher
from executor.sandbox.venvs import ResolvedVenv

from .launching import pool_context, request


@pytest.mark.parametrize("isolation", ["bwrap", "process"])
def test_only_a_bwrap_pools_runs_carry_the_paths_to_hide(tmp_path: Path,
                                                         isolation: Literal["process", "bwrap"]) -> None:
    context = pool_context(tmp_path, tmp_path / "venvs", isolation=isolation)
    launcher = SandboxLauncher(context, "urn:li:dataHubExecutionRequest:spec-test")
    venv = ResolvedVenv("bundled", tmp_path / "venv", tmp_path / "venv" / "bin" / "datahub")
    spec = launcher._spec(request("spec-test", tmp_path / "marker"), venv)
    assert spec.isolation == isolation
    if isolation == "bwrap":
        assert context.config.state_dir in spec.hide_paths
    else:
        assert spec.hide_paths == ()
