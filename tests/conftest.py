"""Shared pytest setup: fixture modules of each subsystem, and a leak check for threads."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.controlplane",
    "tests.fixtures.executor",
]
