"""The sandbox: runs one recipe as an isolated, limited, watched OS process tree.

Public API (everything else in this package is internal)::

    SandboxLimits, SandboxSpec, SandboxRun, SandboxResult, LimitBreach   one run
    build_env                                                           its environment
    Masker                                                              secret masking
    sandbox_capabilities, enforcement_mechanism                         for ``doctor``
    reap_orphans                                                        at executor start
    prune_task_logs                                                     log retention
    describe_exit, limits_from_settings, parse_size                     helpers

Venv selection lives in ``executor.sandbox.venvs`` (imported on demand: it is not needed to
run a sandbox).
"""

from __future__ import annotations

from executor.sandbox.capabilities import enforcement_mechanism, sandbox_capabilities
from executor.sandbox.environment import build_env
from executor.sandbox.limits import SandboxLimits, limits_from_settings, parse_size
from executor.sandbox.masking import Masker
from executor.sandbox.orphans import reap_orphans
from executor.sandbox.output import prune_task_logs
from executor.sandbox.result import LimitBreach, SandboxResult, describe_exit
from executor.sandbox.run import SandboxRun
from executor.sandbox.spec import SandboxSpec

__all__ = [
    "LimitBreach",
    "Masker",
    "SandboxLimits",
    "SandboxResult",
    "SandboxRun",
    "SandboxSpec",
    "build_env",
    "describe_exit",
    "enforcement_mechanism",
    "limits_from_settings",
    "parse_size",
    "prune_task_logs",
    "reap_orphans",
    "sandbox_capabilities",
]
