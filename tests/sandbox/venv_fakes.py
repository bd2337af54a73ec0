"""A pip-free venv builder for tests, and a hand-made acryl-datahub wheel for the pip builder."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

from executor.sandbox.venvs import Progress, VenvRequest


class FakeBuilder:
    """Makes a real (pip-less) venv holding an ``acryl-datahub`` dist-info and a ``datahub`` script.

    ``gate``, when given, holds every build until it is set, so a test can line threads up.
    """

    def __init__(self, gate: threading.Event | None = None, fail: bool = False,
                 payload_bytes: int = 0) -> None:
        self.gate = gate
        self.fail = fail
        self.payload_bytes = payload_bytes
        self.builds: list[str] = []
        self.started = threading.Event()
        self._lock = threading.Lock()

    def build(self, target: Path, request: VenvRequest, progress: Progress) -> None:
        with self._lock:
            self.builds.append(request.version)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test never opened the gate"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
        progress("fake build step")
        if self.fail:
            raise RuntimeError("fake build failed")
        version = "0.0.1" if request.version in ("latest", "bundled") else request.version
        site = next(target.glob("lib/python*/site-packages"))
        info = site / f"acryl_datahub-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: acryl-datahub\nVersion: {version}\n")
        script = target / "bin" / "datahub"
        script.write_text("#!/bin/sh\necho fake datahub \"$@\"\n")
        script.chmod(0o755)
        if self.payload_bytes:
            (target / "payload.bin").write_bytes(b"\1" * self.payload_bytes)


def make_datahub_wheel(directory: Path, version: str = "0.0.1", constraints: str = "",
                       requires: tuple[str, ...] = ()) -> Path:
    """A minimal ``acryl-datahub`` wheel: a ``datahub`` console script, a ``constraints.txt``, the
    sources ``file`` (no extra, as in the real CLI) and ``tiny-db`` (extra ``tiny-db``), sink
    ``datahub-rest`` (an extra, and not a source)."""
    metadata = (f"Metadata-Version: 2.1\nName: acryl-datahub\nVersion: {version}\n"
                "Provides-Extra: tiny-db\nProvides-Extra: datahub-rest\n"
                + "".join(f"Requires-Dist: {r}\n" for r in requires))
    files = {
        "datahub/__init__.py": "",
        "datahub/cli.py": "def main():\n    print('tiny datahub')\n",
        "datahub/constraints.txt": "pip==0.0.0.dev0\nsetuptools==0.0.0.dev0\n" + constraints,
        f"acryl_datahub-{version}.dist-info/METADATA": metadata,
        f"acryl_datahub-{version}.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"acryl_datahub-{version}.dist-info/entry_points.txt":
            "[console_scripts]\ndatahub = datahub.cli:main\n"
            "[datahub.ingestion.source.plugins]\nfile = datahub.cli:main\ntiny-db = datahub.cli:main\n"
            "[datahub.ingestion.sink.plugins]\ndatahub-rest = datahub.cli:main\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record_name = f"acryl_datahub-{version}.dist-info/RECORD"
    record.append(f"{record_name},,")
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"acryl_datahub-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(record_name, "\n".join(record) + "\n")
    return wheel


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """An empty pure-Python wheel ``name==version`` (a dependency for the constraint tests)."""
    dist = name.replace("-", "_")
    files = {
        f"{dist}/__init__.py": "",
        f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}-{version}.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for n, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{n},sha256={digest},{len(text.encode())}")
    record_name = f"{dist}-{version}.dist-info/RECORD"
    record.append(f"{record_name},,")
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for n, text in files.items():
            archive.writestr(n, text)
        archive.writestr(record_name, "\n".join(record) + "\n")
    return wheel
