"""Helpers for tests of ``SandboxLauncher``: a pool, a request, a stand-in CLI, the outcome.

``stubborn_cli_root`` makes a bundled venv (``stubborn-bundled``) whose ``datahub`` touches a
marker file, prints ``ready``, ignores SIGTERM and sleeps: only SIGKILL ends it, so a test
sees whether a stop waited for the grace. ``SilentIndex`` is a package index that accepts
connections and never answers, so a pip build against it hangs until it is stopped.
``held_spare`` makes a warm spare for the holder-level tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from executor.config import ExecutorConfig, GmsSettings, LimitSettings, PoolSettings, VenvSettings
from executor.datahub.aspects import ExecutionRequest
from executor.pool.context import PoolContext
from executor.pool.warm import SPARE_ID, Spare, spare_key
from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox.spawner import SpawnServer
from executor.sandbox.venvs import ResolvedVenv
from tests.fixtures.fake_venvs import bundled_cli
from tests.fixtures.silent import SilentServer

from .helpers import py

PREFIX = "urn:li:dataHubExecutionRequest:"
STUBBORN = "stubborn"
STUBBORN_CLI = """
import json, os, signal, sys, time
recipe = json.loads(json.loads(sys.stdin.read())["__recipe_yaml__"])
open(recipe["source"]["config"]["marker"], "w").close()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def stubborn_cli_root(root: Path) -> Path:
    """``<root>/stubborn-bundled`` with the SIGTERM-ignoring stand-in CLI."""
    return bundled_cli(root, STUBBORN, STUBBORN_CLI)


def pool_context(tmp: Path, venv_root: Path, grace_s: float = 120.0, dynamic: bool = False,
                 isolation: Literal["process", "bwrap"] = "process") -> PoolContext:
    """Pool ``default`` with state under ``tmp``, a long grace, and bundled (or dynamic) venvs."""
    pool = PoolSettings(id="default", limits=LimitSettings(kill_grace_s=grace_s), isolation=isolation,
                        venvs=VenvSettings(bundled_root=venv_root, dependency_resolution=dynamic))
    config = ExecutorConfig(gms=GmsSettings(url="http://127.0.0.1:1"), state_dir=tmp / "state", pools=(pool,))
    return PoolContext(config=config, pool=pool, token="made-up-gms-token", instance_id="test")


def request(request_id: str, marker: Path, version: str = "bundled", plugin: str = STUBBORN,
            extra_env: dict[str, str] | None = None) -> ExecutionRequest:
    """A RUN_INGEST request for ``plugin`` whose recipe names ``marker``."""
    recipe = {"source": {"type": plugin, "config": {"marker": str(marker)}}, "sink": {"type": "console"}}
    args = {"recipe": json.dumps(recipe), "version": version}
    if extra_env:
        args["extra_env_vars"] = json.dumps(extra_env)
    return ExecutionRequest.from_aspect(PREFIX + request_id, {"task": "RUN_INGEST", "args": args})


class Outcome:
    """Collects the one outcome a launcher hands to ``on_exit``."""

    def __init__(self) -> None:
        self.value: Any = None
        self._got = threading.Event()

    def __call__(self, value: Any) -> None:
        self.value = value
        self._got.set()

    def wait(self, timeout_s: float) -> Any:
        assert self._got.wait(timeout_s), f"no outcome within {timeout_s} s"
        return self.value


class SilentIndex(SilentServer):
    """A loopback "package index" that accepts connections and never answers."""

    def __init__(self) -> None:
        super().__init__("/simple", name="silent-index", backlog=16)


NO_VENV = ResolvedVenv("bundled", Path("/nonexistent"), Path("/nonexistent/datahub"))
"""The venv a holder-level spare names: the holder only compares it, nothing runs from it."""


def held_spare(server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> Spare:
    """A holder-level spare as a pool makes one (a held run of a stdin reader, the spare's id):
    the warm-spare tests offer it to a ``WarmSpare`` with ``functools.partial``."""
    spec = make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id=SPARE_ID)
    run = SandboxRun(spec, spawner=server)
    run.start(here=True)
    return Spare(run, NO_VENV, spare_key(spec), "plain")
