#!/usr/bin/env python3
"""The benchmark command: set up what it needs, then measure the executor side by side with Celery.

Usage: python3 bench/run.py [--quick] [--repeats N] [--only ROW,...] [--json FILE]

Standard library only here. It makes (or reuses) the project's ``.venv`` with the ``local``
extra (moto, the control plane, the datahub CLI), ``bench/.venv-celery`` with Celery 5 and its
SQS transport (the anchor: DataHub's own cloud executor is a Celery worker), and, when npm is
there, ``fauxqs`` under ``bench/.cache`` for the throughput rows. Then it runs ``bench.suite``
in the project's venv; see there for the rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))

from _venv import ensure_venv  # noqa: E402

CELERY_VENV = HERE / ".venv-celery"
CELERY_REQUIREMENT = "celery[sqs]>=5.3,<6"
FAUXQS_DIR = HERE / ".cache" / "fauxqs"
FAUXQS_REQUIREMENT = "fauxqs@1"


def ensure_celery_venv() -> Path:
    """``bench/.venv-celery`` with Celery 5 and kombu's SQS transport; returns its python."""
    python = CELERY_VENV / "bin" / "python"
    stamp = CELERY_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == CELERY_REQUIREMENT:
        return python
    if not python.exists():
        print("creating bench/.venv-celery", flush=True)
        venv.EnvBuilder(with_pip=True).create(CELERY_VENV)
    print(f"installing {CELERY_REQUIREMENT} into bench/.venv-celery", flush=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    subprocess.run([*pip, CELERY_REQUIREMENT], check=True)
    stamp.write_text(CELERY_REQUIREMENT)
    return python


def ensure_fauxqs() -> Path | None:
    """The fauxqs entry script (npm), or None when npm is missing or the install fails."""
    found = sorted(FAUXQS_DIR.glob("node_modules/fauxqs/package.json"))
    if not found:
        npm = shutil.which("npm")
        if npm is None:
            return None
        FAUXQS_DIR.mkdir(parents=True, exist_ok=True)
        print(f"installing {FAUXQS_REQUIREMENT} (npm) into bench/.cache/fauxqs", flush=True)
        done = subprocess.run(
            [npm, "install", "--silent", "--prefix", str(FAUXQS_DIR), FAUXQS_REQUIREMENT], check=False
        )
        if done.returncode != 0:
            print("fauxqs could not be installed; throughput rows use moto", flush=True)
            return None
    package = FAUXQS_DIR / "node_modules" / "fauxqs"
    return package if package.exists() else None


def main() -> int:
    python = ensure_venv("test,local")
    celery_python = ensure_celery_venv()
    fauxqs = ensure_fauxqs()
    env = dict(
        os.environ,
        DATAHUB_TELEMETRY_ENABLED="false",
        PYTHONDONTWRITEBYTECODE="1",
        BENCH_CELERY_PYTHON=str(celery_python),
        BENCH_FAUXQS=str(fauxqs or ""),
    )
    return subprocess.run([str(python), "-m", "bench.suite", *sys.argv[1:]], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
