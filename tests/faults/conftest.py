"""Fixtures of the fault suite, and the session summary of what it measured.

``world`` gives a test a ``FaultWorld`` (control plane not yet started, so a test can choose
its lease length, ports and redrive count) and closes it after the test, whatever happened.
Each test's figures go into its report (``tests/faults/figures.py`` prints them as a table at
the end of the session and writes them to ``.cache/fault-figures.json``; docs/reliability.md
quotes them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.figures import ROW
from tests.faults.harness import FIGURES, FaultWorld
from tests.faults.ledger import make_venv_root

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fault_venv_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundled-venv root holding the ``faultsim`` stand-in CLI."""
    return make_venv_root(tmp_path_factory.mktemp("fault-venvs"))


@pytest.fixture(scope="session")
def real_cli_root(fault_venv_root: Path) -> Path:
    """The same root with ``file-bundled``: the real datahub CLI (built once, then reused)."""
    from executor.sandbox.venv_build import ensure_bundled_venv

    real = ensure_bundled_venv(ROOT / ".cache" / "venvs", "file")
    link = fault_venv_root / "file-bundled"
    if not link.exists():
        link.symlink_to(real.resolve())
    return fault_venv_root


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path, fault_venv_root: Path) -> Iterator[FaultWorld]:
    """One test's world; closed (and checked for orphans) after the test."""
    fault_world = FaultWorld(tmp_path, fault_venv_root, request.node.name)
    yield fault_world
    report = getattr(request.node, "rep_call", None)
    before = len(FIGURES)
    try:
        fault_world.close(failed=report is None or report.failed)
    finally:
        request.node.user_properties.extend((ROW, dataclasses.asdict(row)) for row in FIGURES[before:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
