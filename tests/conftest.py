"""Shared pytest setup: fixture modules of each subsystem, and parallel runs (longest first)."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.controlplane",
    "tests.fixtures.executor",
    "tests.fixtures.parallel",
    "tests.faults.figures",
]
