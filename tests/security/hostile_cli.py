"""A hostile stand-in for ``datahub ingest run -c - --report-to FILE``: one attack per run.

Installed as ``bin/datahub`` of a fake bundled venv (``hostile-bundled``, see ``install``), it
reads the stdin envelope the executor sends (recipe and secrets, as the real CLI does) and
runs the attack named by ``source.config.attack``. Each attack is one function in ``ATTACKS``;
add one by writing a function ``(report_path, config) -> exit code`` and decorating it with
``@attack``. Standard library only. Options an attack may read from ``source.config``:

``target``       a file the attack points the report at (symlink, hard link);
``secret_file``  a file with one stolen value per line (how the values were obtained does not
                 matter here: issue 10 lists several ways), printed in every encoding;
``marker``       a file the CLI creates when it starts, so a test can tell it never ran;
``port``         a loopback port that serves the stolen values (the one channel into every
                 isolation mode: under bwrap the recipe sees no file of the test's).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Attack = Callable[[str, dict[str, Any]], int]
ATTACKS: dict[str, Attack] = {}
PLUGIN = "hostile"


def attack(function: Attack) -> Attack:
    """Register ``function`` under its name."""
    ATTACKS[function.__name__] = function
    return function


@attack
def report_symlink_environ(report: str, _config: dict[str, Any]) -> int:
    """The report is a link to the reader's own environment (the executor's, if it follows it)."""
    os.symlink("/proc/self/environ", report)
    print("hostile: report -> /proc/self/environ", flush=True)
    return 0


@attack
def report_symlink_secret(report: str, config: dict[str, Any]) -> int:
    """The report is a link to a file holding a secret outside the work dir."""
    os.symlink(config["target"], report)
    print("hostile: report -> a secret file", flush=True)
    return 0


@attack
def report_hardlink(report: str, config: dict[str, Any]) -> int:
    """The report is a hard link to a foreign file (no link to see, same inode)."""
    os.link(config["target"], report)
    print("hostile: report hard-linked to a secret file", flush=True)
    return 0


@attack
def report_fifo(report: str, _config: dict[str, Any]) -> int:
    """The report is a FIFO nobody writes to: a blocking reader would wait for ever."""
    os.mkfifo(report, 0o600)
    print("hostile: report is a FIFO", flush=True)
    return 0


@attack
def report_directory(report: str, _config: dict[str, Any]) -> int:
    """The report is a directory."""
    os.mkdir(report)
    print("hostile: report is a directory", flush=True)
    return 0


@attack
def print_credentials(report: str, config: dict[str, Any]) -> int:
    """Print each stolen value raw, base64, hex (lower, upper), and write them into the report."""
    return _print_all(report, [v for v in Path(config["secret_file"]).read_text().splitlines() if v])


@attack
def print_served_credentials(report: str, config: dict[str, Any]) -> int:
    """Connect to ``port``, wait for the values it serves (one a line, then EOF), print them all."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", int(config["port"])), timeout=120) as conn:
                print("hostile: connected, waiting for the values", flush=True)
                data = b"".join(iter(lambda: conn.recv(65536), b""))
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return _print_all(report, [v for v in data.decode().splitlines() if v])


def _print_all(report: str, values: list[str]) -> int:
    lines = []
    for value in values:
        raw = value.encode()
        lines += [f"raw {value}", f"base64 {base64.b64encode(raw).decode()}",
                  f"hex {raw.hex()}", f"HEX {raw.hex().upper()}"]
    for line in lines:
        print(f"hostile: {line}", flush=True)
    with open(report, "w") as out:
        json.dump({"source": {"type": PLUGIN, "stolen": lines}, "sink": {}}, out)
    return 0


@attack
def well_behaved(report: str, _config: dict[str, Any]) -> int:
    """No attack: a normal report (the control case)."""
    with open(report, "w") as out:
        json.dump({"source": {"type": PLUGIN, "records": 1}, "sink": {}}, out)
    print("hostile: behaved", flush=True)
    return 0


def install(root: Path) -> Path:
    """``<root>/hostile-bundled`` whose ``bin/datahub`` is this script; returns ``root``."""
    bin_dir = root / f"{PLUGIN}-bundled" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = bin_dir / "python"
    if not python.exists():
        python.symlink_to(sys.executable)
    script = bin_dir / "datahub"
    script.write_text(f"#!{sys.executable}\n" + Path(__file__).read_text())
    script.chmod(0o755)
    return root


def main() -> int:
    envelope = json.loads(sys.stdin.read())
    recipe = json.loads(envelope["__recipe_yaml__"])
    config = recipe["source"]["config"]
    if config.get("marker"):
        Path(config["marker"]).touch()
    report = sys.argv[sys.argv.index("--report-to") + 1]
    return ATTACKS[config["attack"]](report, config)


if __name__ == "__main__":
    sys.exit(main())
