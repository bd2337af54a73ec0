"""One real executor per (executor's uid, isolation): the world of ``test_hostile_matrix.py``.

``matrix_world`` (module scope, four parameter sets) runs ``remote-executor run`` as root or
as a non-root user, with pools in ``process`` or ``bwrap`` isolation, on the local control
plane; its recipes are the hostile stand-in CLI (``hostile_cli.py``). Each parameter set
starts one executor and every attack of the module runs against it, so the whole matrix costs
four executor start-ups. Non-root: when the tests run as root, a throwaway system user (from
``throwaway_users``) runs the executor, through ``setpriv``, with the world's files its own;
when they already run as non-root, the executor runs as that user and the root cases skip.
Leases are short (``LEASE_S``) so that the executor renews them while a recipe runs.

The host's AWS keys (made up) are in the executor's environment, the GMS token too. What a
leak could reach is gathered by ``everything_written``: every file the world left (executor
log, task logs, state dir, outbox) and every result GMS stored.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults.ledger import wait_until
from tests.security.hostile_cli import PLUGIN
from tests.security.leftovers import text_left
from tests.security.privilege_world import RESULT, Account, SecurityWorld

LEASE_S = 24.0
"""The executor renews at half to three quarters of this: several times during the module."""
MODES = [("root", "process"), ("root", "bwrap"), ("nonroot", "process"), ("nonroot", "bwrap")]
HOST_KEYS = {
    "AWS_ACCESS_KEY_ID": "AKIAMATRIXTEST" + secrets.token_hex(4).upper(),
    "AWS_SECRET_ACCESS_KEY": "host/matrix+" + secrets.token_urlsafe(24),
    "AWS_SESSION_TOKEN": "host-matrix-session=" + secrets.token_urlsafe(32),
}


@dataclass
class MatrixWorld:
    """A running executor of one parameter set, and how to attack it."""

    world: SecurityWorld
    who: str
    isolation: str
    urns: list[str] = field(default_factory=list)
    private: list[Path] = field(default_factory=list)
    """Files the test planted that hold secrets on purpose: left out of ``everything_written``."""

    @property
    def cp(self) -> Any:
        return self.world.live_cp

    @property
    def owner(self) -> Account | None:
        return self.world.executor_user

    def give(self, path: Path) -> Path:
        """Make ``path`` the executor's (a file it could be tricked into reading or writing)."""
        if self.owner is not None:
            os.chown(path, self.owner.uid, self.owner.gid)
        return path

    def submit(self, attack: str, **config: Any) -> str:
        urn = self.world.submit({"attack": attack, **config})
        self.urns.append(urn)
        return urn

    def wait(self, urn: str, timeout_s: float = 90) -> dict[str, Any]:
        return self.world.wait_terminal(urn, timeout_s)

    def pool_logs(self) -> Path:
        return self.world.state / "pools" / "default" / "logs"

    def own_credentials(self) -> list[str]:
        """The GMS token, the host's keys, and the pool's leases the executor still masks."""
        return [self.world.token, *HOST_KEYS.values(), *lease_values(self.registered_leases()[-4:])]

    def registered_leases(self) -> list[dict[str, Any]]:
        """Leases of pool ``default`` that the executor's leaser took (and so registered), in order.

        The control plane records every lease it hands out, also those another pool's leaser or
        the test got (each call hands out one per pool); the leaser logs the expiry of the one it
        took, which identifies it unless two calls at once gave ``default`` leases expiring in the
        same millisecond: such a lease is left out (it may be the one nobody took).
        """
        taken = set()
        for line in self.world.executor_log().splitlines():
            record = _json(line)
            if record.get("pool") == "default" and str(record.get("msg", "")).startswith("lease obtained"):
                taken.add(_instant(str(record["msg"]).split("expires ", 1)[1].split(",", 1)[0]))
        ours = [c for c in list(self.world.issued) if c["executorId"] == "default"]
        seen = Counter(_instant(c["expiration"]) for c in ours)
        return [c for c in ours if (at := _instant(c["expiration"])) in taken and seen[at] == 1]

    def everything_written(self) -> str:
        """Every file the world left (but the planted ones) and every result of every request."""
        in_cp = self.world.base / "cp"
        texts = [self.world.executor_log(),
                 *text_left(self.world.base, lambda p: p.is_relative_to(in_cp) or p in self.private)]
        for urn in self.urns:
            texts.extend(repr(r) for r in self.cp.aspect_history(urn, RESULT))
        return "\n".join(texts)


def lease_values(leases: list[dict[str, Any]]) -> list[str]:
    return [c[k] for c in leases for k in ("accessKeyId", "secretKeyId", "sessionToken")]


def _json(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _instant(text: str) -> datetime:
    """An ISO instant to the millisecond (the control plane sends ms, the executor logs µs)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class ValueServer:
    """A loopback port that accepts one hostile recipe and, on ``serve``, sends it values."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self._sock.settimeout(90)
        self.port = int(self._sock.getsockname()[1])
        self._conn: socket.socket | None = None

    def accept(self) -> None:
        """Wait for the recipe to connect: from then on it is running (its masker is built)."""
        self._conn, _ = self._sock.accept()

    def serve(self, values: list[str]) -> None:
        if self._conn is None:
            self.accept()
        assert self._conn is not None
        self._conn.sendall("".join(f"{v}\n" for v in values).encode())
        self._conn.close()
        self._conn = None

    def close(self) -> None:
        for sock in (self._conn, self._sock):
            if sock is not None:
                sock.close()


def executor_account(request: pytest.FixtureRequest, who: str) -> Account | None:
    """None: the executor runs as this test process (root, or already non-root)."""
    if who == "root":
        if os.geteuid() != 0:
            pytest.skip("the root cases need the tests to run as root")
        return None
    if os.geteuid() != 0:
        return None
    users = request.getfixturevalue("throwaway_users")
    return users.executor  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=MODES, ids=[f"{w}-{i}" for w, i in MODES])
def matrix_world(request: pytest.FixtureRequest) -> Iterator[MatrixWorld]:
    who, isolation = request.param
    account = executor_account(request, who)
    if isolation == "bwrap":
        request.getfixturevalue("bubblewrap")
        if account is not None:
            from tests.security.bubblewrap import bwrap_fails

            why = bwrap_fails(("setpriv", f"--reuid={account.uid}", f"--regid={account.gid}",
                               "--clear-groups", "--"))
            if why is not None:
                pytest.skip(f"as a non-root user: {why}")
    world = SecurityWorld(executor_user=account, recipe_user=None, isolation=isolation,
                          cli="hostile_cli.py", lease_seconds=LEASE_S)
    try:
        if account is not None:  # the world's files are the executor's, as an operator would set it up
            os.chown(world.base, account.uid, account.gid)
        world.start(dict(HOST_KEYS))
        yield MatrixWorld(world, who, isolation)
    finally:
        world.close()


__all__ = ["PLUGIN", "MatrixWorld", "ValueServer", "lease_values", "matrix_world", "wait_until"]
