"""``SandboxSpec``: what one sandboxed run runs, with what input, limits and secrets."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from executor.errors import BadInputError
from executor.sandbox.held_input import REFUSED, secret_in_argv
from executor.sandbox.identity import RunAs
from executor.sandbox.isolation import ISOLATION_MODES
from executor.sandbox.limits import MiB, SandboxLimits
from executor.sandbox.live_masking import SecretSource


@dataclass(frozen=True)
class SandboxSpec:
    """What to run and under which limits.

    ``argv`` may contain ``{work_dir}`` and ``{report_file}``, replaced by the run's real
    paths; ``report_file`` names a file in the work dir whose (masked) content becomes
    ``SandboxResult.report_json``. ``env`` should come from ``build_env``; HOME and TMPDIR
    are set to the work dir whatever it says. Secrets travel in ``stdin`` only. The full
    masked log goes to ``log_file`` (capped at ``log_max_bytes``); once the process is spawned,
    older ``*.log`` files beside it beyond ``log_keep_files`` or ``log_keep_days`` are deleted.
    ``isolation="bwrap"`` adds bubblewrap's read-only view with ``hide_paths`` emptied.
    ``run_as`` runs the recipe as that uid/gid and hands it the work dir (``sandbox.identity``).
    ``live_secrets`` are values masked too that may grow while the run goes on (the executor's
    own credentials: a lease renewed mid-run; ``sandbox.live_masking``).
    ``hold_input=True`` spawns the process at once but gives it no stdin (``stdin`` is ignored)
    until ``SandboxRun.give_input`` brings it with its secrets (``sandbox.held_input``).
    """

    argv: Sequence[str]
    stdin: bytes = field(default=b"", repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    work_root: Path = Path(tempfile.gettempdir()) / "remote-executor-work"
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    secrets: Sequence[str] = field(default=(), repr=False)
    log_file: Path | None = None
    task_id: str = "task"
    report_file: str | None = None
    log_max_bytes: int = 256 * MiB
    log_keep_files: int | None = 500
    log_keep_days: float | None = 30.0
    use_cgroup: bool = True
    isolation: str = "process"
    hide_paths: Sequence[Path] = ()
    run_as: RunAs | None = None
    live_secrets: SecretSource | None = field(default=None, repr=False, compare=False)
    hold_input: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "secrets", tuple(self.secrets))
        argv_ok = all(isinstance(a, str) and "\0" not in a for a in self.argv)
        if not self.argv or not self.argv[0] or not argv_ok:
            raise BadInputError("sandbox argv must be strings without NUL, starting with a program")
        if secret_in_argv(self.secrets, self.argv):
            raise BadInputError(REFUSED)
        if self.report_file is not None and (not self.report_file or "/" in self.report_file):
            raise BadInputError("report_file must be a plain file name inside the work dir")
        if self.isolation not in ISOLATION_MODES:
            raise BadInputError(f"isolation must be one of {ISOLATION_MODES}, got {self.isolation!r}")
        object.__setattr__(self, "hide_paths", tuple(Path(p) for p in self.hide_paths))
