"""Resource limits of one sandboxed run, and the units they are written in.

``SandboxLimits`` is the value every enforcement layer reads (psutil monitor, cgroup,
rlimits). This module also owns parsing and formatting of sizes and durations, so that a
breach message reads the same everywhere ("memory 2.1 GiB > limit 2 GiB").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from loguru import logger

from executor import scheduling, sizes
from executor.errors import BadInputError

if TYPE_CHECKING:
    from executor.sandbox.cgroups import TaskCgroup

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

TASK_MEMORY_VAR = "EXECUTOR_TASK_MEMORY_LIMIT"
"""DataHub's per-task knob (bytes, in the request's ``extra_env_vars``)."""



@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use; ``None`` means unlimited.

    ``memory_bytes`` is the RSS of the whole tree; ``cpu_seconds`` the user+system time of
    the whole tree; ``output_bytes`` what the run writes to stdout/stderr; ``disk_bytes``
    the size of its private work dir. ``sample_interval_s`` is the monitor's interval where it
    cannot foresee a limit (without a cgroup, and while a run ends); elsewhere it paces itself
    by the nearest limit (``pacing``). ``kill_grace_s`` is the SIGTERM -> SIGKILL delay.
    """

    memory_bytes: int | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    max_processes: int | None = None
    output_bytes: int | None = None
    open_files: int = 1024
    address_space_bytes: int | None = None
    disk_bytes: int | None = None
    sample_interval_s: float = 0.1
    kill_grace_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "cpu_seconds", "wall_seconds", "max_processes", "output_bytes",
                     "address_space_bytes", "disk_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise BadInputError(f"sandbox limit {name} must be positive or None, got {value!r}")
        if self.open_files < 16:
            raise BadInputError(f"sandbox limit open_files must be >= 16, got {self.open_files}")
        if not 0.005 <= self.sample_interval_s <= 0.25:
            raise BadInputError("sample_interval_s must be within [0.005, 0.25] seconds")
        if self.kill_grace_s < 0:
            raise BadInputError("kill_grace_s must be >= 0")

    def with_task_overrides(self, extra_env: Mapping[str, str], ceiling_bytes: int | None = None
                            ) -> SandboxLimits:
        """Apply the request's ``EXECUTOR_TASK_MEMORY_LIMIT``; never above ``ceiling_bytes``.

        The ceiling defaults to the pool's own memory limit, so a request may lower it but
        only the operator (by passing a ceiling) lets it ask for more.
        """
        raw = extra_env.get(TASK_MEMORY_VAR)
        if raw is None or not str(raw).strip():
            return self
        asked = parse_size(str(raw), TASK_MEMORY_VAR)
        ceiling = ceiling_bytes if ceiling_bytes is not None else self.memory_bytes
        if ceiling is not None and asked > ceiling:
            logger.warning("{} asks for {}, above the pool's ceiling {}; using the ceiling",
                           TASK_MEMORY_VAR, format_bytes(asked), format_bytes(ceiling))
            asked = ceiling
        return replace(self, memory_bytes=asked)


def limits_from_settings(settings: Any) -> SandboxLimits:
    """Map the pool config (``executor.config.LimitSettings``, sizes in MiB) to ``SandboxLimits``."""

    def mib(value: int | None) -> int | None:
        return None if value is None else int(value) * MiB

    return SandboxLimits(
        memory_bytes=mib(settings.memory_mb),
        cpu_seconds=settings.cpu_seconds,
        wall_seconds=settings.wall_seconds,
        max_processes=settings.max_processes,
        output_bytes=mib(settings.output_mb),
        open_files=settings.open_files,
        disk_bytes=mib(settings.disk_mb),
        kill_grace_s=settings.kill_grace_s,
    )


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from a size such as ``"2147483648"``, ``"512Mi"`` or ``"2G"``: the one parser of
    ``executor.sizes`` (DataHub's byte count; Kubernetes' meaning of the suffixes)."""
    return sizes.parse_size(text, what)


def format_bytes(value: float, decimals: int = 1) -> str:
    """``2 GiB``, ``2.1 GiB``, ``512 MiB``, ``12 B``: ``decimals`` places, none when they are zeros."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(value) >= size:
            return f"{_decimals(value / size, decimals)} {unit}"
    return f"{int(value)} B"


def format_seconds(value: float, decimals: int = 1) -> str:
    """``12.3 s``, ``60 s``."""
    return f"{_decimals(value, decimals)} s"


def _decimals(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def launcher_options(limits: SandboxLimits, cgroup: TaskCgroup | None) -> list[str]:
    """The launcher's options: parent check, cgroups, rlimits (the second line of defence)."""
    options = ["--parent", str(os.getpid()), "--nofile", str(limits.open_files), "--core", "0"]
    for directory in cgroup.dirs if cgroup is not None else ():
        options += ["--cgroup", str(directory)]
    if limits.address_space_bytes is not None:
        options += ["--as", str(limits.address_space_bytes)]
    if limits.cpu_seconds is not None:
        # Backstop per process only: the monitor, which sums the tree, should act first.
        soft = int(limits.cpu_seconds) + 2
        options += ["--cpu", f"{soft}:{soft + int(limits.kill_grace_s) + 1}"]
    if limits.disk_bytes is not None:
        options += ["--fsize", str(limits.disk_bytes)]
    return options + scheduling.recipe_options()
