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


def bwrap_prefix(work_dir: Path, hide: Sequence[Path] = ()) -> list[str]:
    """The bwrap command line that runs what follows ``--`` inside the isolated view."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise BadInputError("isolation 'bwrap' was asked for, but bubblewrap (bwrap) is not installed")
    work = str(work_dir)
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", work, work, "--chdir", work]
    for path in hide:
        if path.is_dir() and not work.startswith(str(path).rstrip("/") + "/"):
            argv += ["--tmpfs", str(path)]
    return [*argv, "--"]
