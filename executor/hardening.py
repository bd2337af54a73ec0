"""What keeps the executor's own secrets out of a recipe's reach at the process level.

Three things, done by ``remote-executor run`` at start-up (``executor.cli.service``):

- ``make_undumpable()``: ``prctl(PR_SET_DUMPABLE, 0)``, before any thread or child exists. A
  process of the same uid (a recipe in ``process`` isolation without ``run_as``) can then not
  read our ``/proc/<pid>/environ``, ``mem``, ``fd/*``, ``maps`` or ``ptrace`` us; /proc files
  become root-owned. Children get their own setting back when they exec (the exec wrapper and
  the recipe are dumpable again: that is the kernel's rule for a plain exec, and harmless, as
  they never hold the executor's credentials).
- ``take_credentials(environ)``: once the config is loaded, the GMS token variable and the
  host's AWS keys leave ``os.environ`` (nothing we start later can inherit them, and the ``env``
  secret store cannot serve them). Their bytes in the process's initial environment block, which
  ``/proc/<pid>/environ`` shows, are overwritten as well. A token read from ``gms.token_file``
  or a systemd credential never enters the environment at all: prefer those.
- ``own_credentials()``: the values taken above plus any registered later (the GMS token, a
  lease's AWS keys), for the stores and maskers that must refuse or hide them whatever name
  they come under.

What was taken and registered lives in one ``ProcessCredentials`` object, ``PROCESS``: only the
process's real environment fills it (``take_credentials`` on any other mapping just takes the
values out and returns them), so nothing but ``run`` and the leases it registers puts values
there. A test that needs exact sets swaps in a fresh one (``monkeypatch.setattr(hardening,
"PROCESS", ProcessCredentials())``).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

PR_SET_DUMPABLE = 4
CREDENTIAL_VARIABLES = (
    "DATAHUB_GMS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)
"""The executor's own credentials when they come from the environment."""
MIN_CREDENTIAL_LENGTH = 8
"""Shorter values are not treated as credentials (refusing ``"1"`` everywhere helps nobody)."""


@dataclass
class ProcessCredentials:
    """The executor's own credential values, the host's AWS keys and the paths only it may read."""

    own: set[str] = field(default_factory=set)
    host_aws: dict[str, str] = field(default_factory=dict)
    paths: set[Path] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_taken(self, taken: dict[str, str]) -> None:
        """Values ``take_credentials`` took out of the real environment."""
        with self.lock:
            self.host_aws.update({k: v for k, v in taken.items() if k.startswith("AWS_")})
        self.register(taken.values())

    def register(self, values: Iterable[str | None]) -> None:
        """Values long enough to count as credentials join ``own``."""
        with self.lock:
            self.own.update(v for v in values if v and len(v) >= MIN_CREDENTIAL_LENGTH)


PROCESS = ProcessCredentials()
"""This process's: filled by ``run`` (``take_credentials()``) and the leases it registers."""


def make_undumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``; False (and a warning) where that is impossible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        logger.warning("cannot make the executor non-dumpable ({}); a same-uid recipe may read "
                       "its /proc files", exc)
        return False
    return True


def take_credentials(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Remove the credential variables from ``environ`` (default ``os.environ``); return them.

    Only with the real ``os.environ`` are the values recorded in ``PROCESS`` (another mapping is
    nobody's environment), and the bytes of each value in the C environment (the initial block
    ``/proc/<pid>/environ`` reads included) overwritten first.
    """
    env = os.environ if environ is None else environ
    taken = {name: env[name] for name in CREDENTIAL_VARIABLES if env.get(name)}
    if env is os.environ and taken:
        _wipe_c_environment(taken)
    for name in taken:
        del env[name]
    if env is os.environ:
        PROCESS.record_taken(taken)
    return taken


def register(values: Iterable[str | None]) -> None:
    """Add values (the GMS token, leased keys) to the executor's own credentials."""
    PROCESS.register(values)


def own_credentials() -> frozenset[str]:
    """Every credential of the executor known so far (values; never log them)."""
    state = PROCESS
    with state.lock:
        return frozenset(state.own)


def secure_state_dir(state_dir: Path) -> None:
    """The state dir and its ``pools`` folder exist, 0700: a recipe of another uid cannot even list
    them (a volume or an older install may have made them wider)."""
    for directory in (state_dir, state_dir / "pools"):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = directory.stat().st_mode & 0o777
        if mode == 0o700:
            continue
        try:
            os.chmod(directory, 0o700)
        except PermissionError:  # another owner's directory (e.g. an image's, for uid 1000)
            logger.warning("state dir {} has mode {:o} and is not the executor's to change; make it 0700",
                           directory, mode)


def protect_paths(paths: Iterable[str | os.PathLike[str] | None]) -> None:
    """Files only the executor may read (its config file): bwrap'd recipes never see them."""
    state = PROCESS
    with state.lock:
        state.paths.update(Path(p).absolute() for p in paths if p)


def protected_paths() -> tuple[Path, ...]:
    """What ``protect_paths`` collected, plus systemd's credentials directory if there is one."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    state = PROCESS
    with state.lock:
        found = set(state.paths)
    if credentials:
        found.add(Path(credentials))
    return tuple(sorted(found))


def host_aws_credentials() -> dict[str, str]:
    """The host's AWS keys as they were in the environment at start-up (for the AWS store)."""
    state = PROCESS
    with state.lock:
        return dict(state.host_aws)


def _wipe_c_environment(names: Iterable[str]) -> None:
    """Overwrite ``NAME=value`` strings of ``names`` in libc's ``environ`` with NUL bytes.

    Only the value bytes change; the entries are then unset by ``del os.environ[name]``.
    """
    prefixes = [f"{name}=".encode() for name in names]
    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError, AttributeError):
        return
    index = 0
    while environ[index]:
        address = environ[index]
        assert address is not None
        entry = ctypes.string_at(address)
        prefix = next((p for p in prefixes if entry.startswith(p)), None)
        if prefix is not None:
            ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
        index += 1
