"""Optional filesystem and process-namespace isolation with bubblewrap (``isolation="bwrap"``).

The recipe then sees the host read-only, its own work dir writable at the same path, a
private /tmp, a private /proc (it cannot read the executor's environment or command line),
and an empty tmpfs over each hidden path (the executor's state dir, config, secrets mount).
The network stays shared: recipes need it. Limits, cgroups and the parent-death signal still
apply: the exec wrapper sets them up and then execs bwrap, which runs the recipe.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from executor.errors import BadInputError

ISOLATION_MODES = ("process", "bwrap")


def bwrap_prefix(work_dir: Path, hide: Sequence[Path] = (), program: str | None = None) -> list[str]:
    """The bwrap command line that runs what follows ``--`` inside the isolated view.

    ``program`` is what will run: when its environment (a venv's root, or its own folder)
    lies under /tmp, the private /tmp would hide it, so that folder is bound back read-only.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise BadInputError("isolation 'bwrap' was asked for, but bubblewrap (bwrap) is not installed")
    work = str(work_dir)
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", work, work, "--chdir", work]
    kept = _program_root(program)
    if kept is not None:
        argv += ["--ro-bind", str(kept), str(kept)]
    for path in hide:
        if path.is_dir() and not work.startswith(str(path).rstrip("/") + "/"):
            argv += ["--tmpfs", str(path)]
    return [*argv, "--"]


def _program_root(program: str | None) -> Path | None:
    """The venv (or folder) of ``program`` if the private /tmp would hide it, else None."""
    if not program:
        return None
    path = Path(shutil.which(program) or program).absolute()
    root = path.parent.parent if path.parent.name == "bin" else path.parent
    return root if Path("/tmp") in root.parents else None
