"""Bubblewrap for the security suite: installed where the machine allows, else a clear skip.

bwrap is not a Python package, and CI runs on a fresh machine where nothing installed by hand
exists. ``bubblewrap`` (session fixture) installs it with ``apt-get install -y bubblewrap`` when
the tests run as root and it is missing, once per machine: parallel workers take a file lock,
and the one that comes second finds it installed. Then it checks that bwrap really works here
(user namespaces allowed; as the given user for the non-root cases); a test that needs it is
skipped with the reason where it cannot be had (not root, no apt, apt failed, no namespaces).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

LOCK = Path(tempfile.gettempdir()) / "remote-executor-tests-apt.lock"
INSTALL_TIMEOUT_S = 600.0


def install_bubblewrap() -> str | None:
    """Install bwrap with apt if missing; None when it is there, else why it cannot be."""
    if shutil.which("bwrap") is not None:
        return None
    if os.geteuid() != 0:
        return "bubblewrap is not installed, and installing it needs root"
    if shutil.which("apt-get") is None:
        return "bubblewrap is not installed, and there is no apt-get to install it"
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing it right now
        if shutil.which("bwrap") is not None:
            return None
        error = _apt_install()
        if error is not None and "Unable to locate package" in error:  # no package lists yet
            _apt(["update", "-q"])
            error = _apt_install()
    return None if shutil.which("bwrap") is not None else f"apt-get install bubblewrap failed: {error}"


def _apt_install() -> str | None:
    return _apt(["install", "-y", "-q", "--no-install-recommends", "bubblewrap"])


def _apt(args: list[str]) -> str | None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        done = subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env,
                              timeout=INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"apt-get {args[0]} took longer than {INSTALL_TIMEOUT_S:.0f} s"
    return None if done.returncode == 0 else (done.stderr.strip() or done.stdout.strip())[-400:]


def bwrap_fails(prefix: tuple[str, ...] = ()) -> str | None:
    """None when a minimal bwrap sandbox runs (through ``prefix``: e.g. setpriv to another uid)."""
    command = [*prefix, "bwrap", "--unshare-all", "--share-net", "--die-with-parent", "--ro-bind", "/", "/",
               "--proc", "/proc", "--dev", "/dev", "true"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode == 0:
        return None
    return f"bwrap cannot make a sandbox here (user namespaces?): {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def bubblewrap() -> str:
    """The path of a working bwrap (installed if the machine allows); skips with the reason if not."""
    why = install_bubblewrap() or bwrap_fails()
    if why is not None:
        pytest.skip(why)
    return str(shutil.which("bwrap"))
