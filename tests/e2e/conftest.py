"""One control plane and one executor (pools ``default`` and ``other``) per e2e test module.

Sharing them keeps the set fast; the tests of a module do not interfere because each waits for
its own requests to end, so the capacity is free again before the next starts. Module scope
(not package): only one executor may run in a process at a time (its shutdown stops every
pykka actor), and a module that needs a fresh one uses ``executor_service`` instead. The GMS
token contains ``+``, ``/`` and ``=`` so that its base64 and URL-encoded forms differ from it:
the secret tests look for all three.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.executor import ExecutorHarness, running_executor

if TYPE_CHECKING:
    from executor.local.controlplane.server import ControlPlane

POOLS = [{"id": "default", "max_workers": 2}, {"id": "other", "max_workers": 1}]


@pytest.fixture(scope="module")
def e2e_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with pools ``default`` and ``other`` for one module."""
    from executor.local.controlplane.server import ControlPlane

    token = f"e2e+{secrets.token_urlsafe(18)}/{secrets.token_urlsafe(6)}=="
    state = tmp_path_factory.mktemp("e2e-controlplane")
    with ControlPlane(pools=("default", "other"), token=token, state_dir=str(state)) as cp:
        yield cp


@pytest.fixture(scope="module")
def e2e(
    e2e_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, bundled_venv_root: Path
) -> Iterator[ExecutorHarness]:
    """The shared executor (locked mode, secrets from the control plane) and its user-side calls."""
    state = tmp_path_factory.mktemp("e2e-executor") / "state"
    with running_executor(e2e_control_plane, state, bundled_venv_root, pools=POOLS) as harness:
        harness.create_secret("E2E_SINK_TOKEN", e2e_control_plane.token)
        yield harness
