"""Optional filesystem and process-namespace isolation with bubblewrap (``isolation="bwrap"``).

The recipe sees an allowlist, not the host: the system trees read-only (``SYSTEM_TREES``:
/usr, /etc, /opt, the /bin and /lib links, /sys), the venv that runs it read-only (and the
base Python that venv links to), its own work dir read-write at the same path, a private
/dev, /tmp and /proc (it cannot see the executor's processes, environment or command line).
Nothing else exists in its view: not the executor's state dir (other tasks' work dirs, logs,
outbox and its key), not the config file or token file, not /home, /root, /var, /srv or /mnt.
Paths to hide that lie inside a system tree anyway (``/etc/remote-executor``, a config or
token file under /etc or /opt) get an empty tmpfs (directories) or /dev/null (files: on bwrap's
nodev mount it cannot even be opened) on top.
The network stays shared: recipes need it. Limits, cgroups and the parent-death signal still
apply: the exec wrapper sets them up and then execs bwrap, which runs the recipe.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from executor.errors import BadInputError

ISOLATION_MODES = ("process", "bwrap")
SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys",
                "/run/systemd/resolve")
"""Read-only in a recipe's view (a symlink such as /bin -> usr/bin is recreated as a link)."""


def bwrap_prefix(work_dir: Path, hide: Sequence[Path] = (), program: str | None = None,
                 other_user: bool = False) -> list[str]:
    """The bwrap command line that runs what follows ``--`` inside the isolated view.

    ``program`` is what will run: its venv (and the Python that venv is built on) is bound
    read-only wherever it lives. ``other_user``: bwrap itself runs as a ``run_as`` uid, which
    can only bind folders every user may enter (others are left out, not failed on).
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise BadInputError("isolation 'bwrap' was asked for, but bubblewrap (bwrap) is not installed")
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    bound: list[str] = []
    for tree in SYSTEM_TREES:
        path = Path(tree)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), tree]
        elif path.is_dir():
            argv += ["--ro-bind", tree, tree]
            bound.append(tree)
    for path in hide:  # before the binds below, which may lie inside a hidden path
        argv += _cover(path, bound)
    for root in program_roots(program):
        if not _inside(str(root), bound) and (not other_user or _world_reachable(root)):
            argv += ["--ro-bind", str(root), str(root)]
    work = str(work_dir)
    argv += ["--bind", work, work, "--chdir", work]
    return [*argv, "--"]


def program_roots(program: str | None) -> list[Path]:
    """The folders ``program`` needs to run: its venv (or folder) and that venv's base Python.

    A script's interpreter (``#!`` line) counts too, so a stand-in CLI whose shebang names
    another venv's Python still starts.
    """
    if not program:
        return []
    path = Path(shutil.which(program) or program).absolute()
    roots: list[Path] = []
    for candidate in (path, *_interpreter(path)):
        root = candidate.parent.parent if candidate.parent.name == "bin" else candidate.parent
        roots.append(root)
        roots.extend(_base_python(root))
    return list(dict.fromkeys(r for r in roots if _usable_dir(r)))


def _interpreter(script: Path) -> Iterable[Path]:
    """The interpreter named by ``script``'s ``#!`` line, if any."""
    try:
        with open(script, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    words = first[2:].decode("utf-8", "replace").split()
    return [Path(words[0])] if words and words[0].startswith("/") else []


def _base_python(venv: Path) -> list[Path]:
    """The prefix of the Python a venv was made from (``home`` in ``pyvenv.cfg``), resolved."""
    roots: list[Path] = []
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                roots.append(Path(value.strip()).resolve().parent)
    except OSError:
        pass
    python = venv / "bin" / "python"
    try:
        if python.is_symlink():
            roots.append(python.resolve().parent.parent)
    except OSError:
        pass
    return roots


def _cover(path: Path, bound: list[str]) -> list[str]:
    """bwrap arguments that blank ``path`` out, if it would be visible at all."""
    text = str(path)
    if not _inside(text, bound):
        return []  # outside every bound tree: not in the recipe's view anyway
    if path.is_dir():
        return ["--tmpfs", text]
    if path.exists():
        return ["--ro-bind", "/dev/null", text]
    return []


def _usable_dir(path: Path) -> bool:
    """A folder this process may enter (a base Python under a private home may not be)."""
    try:
        return path.is_dir() and os.access(path, os.R_OK | os.X_OK)
    except OSError:
        return False


def _world_reachable(path: Path) -> bool:
    """True if every folder from / down to ``path`` lets any user pass (mode o+x)."""
    try:
        return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents))
    except OSError:
        return False


def _inside(path: str, trees: Iterable[str]) -> bool:
    return any(path == tree or path.startswith(tree.rstrip("/") + "/") for tree in trees)
