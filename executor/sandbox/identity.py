"""Running recipes as another, unprivileged uid (a pool's ``run_as``), and what that needs.

With ``run_as`` the exec wrapper (``launch.py``) drops supplementary groups, switches to the
pool's gid and uid, checks it cannot switch back, clears any ambient capability and sets
``no_new_privs`` before it execs the recipe. The recipe then cannot read the executor's 0700
state dir (outbox and its key, logs, config, other pools), its /proc files, or signal it.

Its work dir cannot live in that state dir (the uid could not reach it), so a ``run_as`` pool's
work dirs go under ``<work base>/<pool id>``: the base and the pool folder are 0711 and owned
by the executor (the recipe can pass through but not list them), each work dir is 0700 and
owned by the recipe's uid. All of a pool's recipes share that uid: run them under bwrap as well
to keep concurrent tasks of one pool from seeing each other's processes.

The executor needs CAP_SETUID and CAP_SETGID (for the wrapper), CAP_KILL (to stop the tree),
CAP_CHOWN (to hand over the work dir) and CAP_DAC_OVERRIDE (to read back the report and
remove what the recipe wrote). ``switch_support`` says whether this process has them.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from executor.errors import ConfigError

NEEDED_CAPABILITIES = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7}
"""Capability names and their bit numbers (linux/capability.h)."""


@dataclass(frozen=True)
class RunAs:
    """The resolved identity a recipe runs with."""

    uid: int
    gid: int
    name: str

    def launcher_options(self) -> list[str]:
        """The exec wrapper's options that make it switch to this identity."""
        return ["--user", str(self.uid), "--group", str(self.gid)]


def resolve_run_as(user: str, group: str | None, where: str = "run_as") -> RunAs:
    """Look ``user`` (name or uid) and ``group`` (name or gid; default the user's) up."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    except KeyError:
        if not user.isdigit():
            raise ConfigError(where, [f"user {user!r} does not exist on this host"]) from None
        uid, gid, name = int(user), int(user), user
    if group is not None:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(where, [f"group {group!r} does not exist on this host"]) from None
    if uid == 0 or gid == 0:
        raise ConfigError(where, ["recipes may not run as root (uid or gid 0)"])
    if uid == os.geteuid():
        raise ConfigError(where, [f"user {name!r} is the executor's own user: it protects nothing"])
    return RunAs(uid, gid, name)


def work_base(state_dir: Path, configured: Path | None) -> Path:
    """Where ``run_as`` pools keep their work dirs: ``work_dir`` or ``<state_dir>-work``."""
    return configured if configured is not None else state_dir.with_name(state_dir.name + "-work")


def prepare_work_root(base: Path, pool_id: str) -> Path:
    """``<base>/<pool id>``, both 0711 and the executor's: passable, not listable, for a recipe.

    A base owned by someone else (an image's directory, a volume) is taken over with CAP_CHOWN.
    """
    root = base / pool_id
    for directory in (base, root):
        directory.mkdir(mode=0o711, parents=True, exist_ok=True)
        if directory.is_symlink() or not directory.is_dir():
            raise ConfigError(str(directory), ["the work root must be a directory, not a link"])
        try:
            if directory.lstat().st_uid != os.geteuid():
                os.chown(directory, os.geteuid(), os.getegid(), follow_symlinks=False)
            os.chmod(directory, 0o711, follow_symlinks=False)  # noqa: S103 (traverse only)
        except OSError as exc:
            problem = f"cannot make it the executor's, mode 0711: {exc.strerror}"
            raise ConfigError(str(directory), [problem]) from None
    return root


def grant_work_dir(work_dir: Path, run_as: RunAs) -> None:
    """Hand a fresh (still empty but for ``tmp``) work dir to the recipe's uid, mode 0700.

    The mode is set while the executor still owns the directory: after the chown only CAP_FOWNER
    could change it, which the executor does not hold (the chart grants five capabilities)."""
    for path in (work_dir, work_dir / "tmp"):
        os.chmod(path, 0o700, follow_symlinks=False)
        os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)


def switch_support() -> tuple[bool, str]:
    """Whether this process can run recipes as another uid, and what it lacks if not."""
    effective = _effective_capabilities()
    if effective is None:
        return os.geteuid() == 0, "cannot read this process's capabilities"
    missing = [name for name, bit in NEEDED_CAPABILITIES.items() if not effective >> bit & 1]
    if missing:
        return False, f"uid {os.geteuid()} lacks {', '.join(missing)}"
    return True, f"uid {os.geteuid()} with {', '.join(NEEDED_CAPABILITIES)}"


def _effective_capabilities() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        return None
    return None
