"""Create (or reuse) the project's venv under ``.venv`` with the extras a command needs.

Only the standard library is used here: these scripts run on a machine with nothing but python3.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def venv_python() -> Path:
    """The venv's interpreter path."""
    return VENV / "bin" / "python"


def ensure_venv(extras: str) -> Path:
    """Make ``.venv`` hold the project installed editable with ``extras``; return its python.

    A stamp of setup.cfg's hash and the extras skips the install when nothing changed.
    """
    if not venv_python().exists():
        print(f"creating .venv with {sys.executable}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras.replace(',', '-')}"
    if stamp.exists() and stamp.read_text() == digest:
        return venv_python()
    print(f"installing remote-executor[{extras}] into .venv (first run takes a minute)", flush=True)
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-q", "-e", f"{ROOT}[{extras}]"], check=True)
    stamp.write_text(digest)
    return venv_python()
