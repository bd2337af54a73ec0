"""A real executor whose bundled ``hostile`` venv runs ``hostile_cli.py``, and where to look for leaks.

``hostile_world`` (module scope) starts the local control plane (its GMS token holds ``+``,
``/`` and ``=`` so that its encodings differ from it), puts made-up host AWS keys into the
environment, and starts one in-process executor (pool ``default``) on it. Every lease the
control plane hands out is recorded, so a test knows the leased credentials without asking
the executor. ``everything_written`` gathers what a leak could reach: every file under the
executor's state dir, every result GMS stored, and every log record of the executor.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fixtures.executor import RESULT_ASPECT, ExecutorHarness, running_executor
from tests.security.hostile_cli import PLUGIN, install
from tests.security.leftovers import text_left

if TYPE_CHECKING:
    from executor.local.controlplane.server import ControlPlane

HOST_KEYS = {
    "AWS_ACCESS_KEY_ID": "AKIAHOSTILETEST" + secrets.token_hex(4).upper(),
    "AWS_SECRET_ACCESS_KEY": "host/secret+" + secrets.token_urlsafe(24),
    "AWS_SESSION_TOKEN": "host-session=" + secrets.token_urlsafe(32),
}


@dataclasses.dataclass
class HostileWorld:
    """The running executor, its control plane, and the leases it was handed."""

    harness: ExecutorHarness
    tmp: Path
    leases: list[dict[str, Any]] = dataclasses.field(repr=False)
    urns: list[str] = dataclasses.field(default_factory=list)

    @property
    def cp(self) -> ControlPlane:
        return self.harness.cp

    def submit(self, attack: str, **config: Any) -> str:
        """Create a source whose recipe runs ``attack`` and request a run; the request URN."""
        source = {"type": PLUGIN, "config": {"attack": attack, **config}}
        recipe = {"source": source, "sink": {"type": "console"}}
        _, urn = self.harness.submit(recipe)
        self.urns.append(urn)
        return urn

    def run(self, attack: str, timeout_s: float = 90.0, **config: Any) -> dict[str, Any]:
        """Run ``attack`` to a delivered terminal result; the result GMS holds."""
        return self.harness.wait_terminal(self.submit(attack, **config), timeout_s)

    def leased_values(self) -> list[str]:
        """Key id, secret key and session token of every lease handed to pool ``default``."""
        return [c[k] for c in self.leases if c["executorId"] == "default"
                for k in ("accessKeyId", "secretKeyId", "sessionToken")]

    def own_credentials(self) -> list[str]:
        """The executor's GMS token, the leased credentials and the host's AWS keys."""
        return [self.cp.token, *self.leased_values(), *HOST_KEYS.values()]

    def everything_written(self) -> str:
        """Files under the state dir, every stored result of every request, every log record."""
        parts = [self.harness.logs.text(), *text_left(self.harness.state_dir)]
        for urn in self.urns:
            parts.extend(repr(r) for r in self.cp.aspect_history(urn, RESULT_ASPECT))
        return "\n".join(parts)


def encodings(value: str) -> dict[str, str]:
    """The forms a stolen value is printed in: raw, base64 (padded or not), hex lower and upper."""
    raw = value.encode()
    b64 = base64.b64encode(raw).decode()
    return {"raw": value, "base64": b64.rstrip("="), "hex": raw.hex(), "HEX": raw.hex().upper()}


def leaks(text: str, values: Iterable[str]) -> list[str]:
    """Which forms of which values (by index) appear in ``text``: empty when nothing leaked."""
    return [f"value {i} as {form}" for i, value in enumerate(values)
            for form, shown in encodings(value).items() if shown in text]


@pytest.fixture(scope="module")
def hostile_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileWorld]:
    """The control plane, made-up host AWS keys, and a running executor with the hostile CLI."""
    from executor.local.controlplane.server import ControlPlane

    tmp = tmp_path_factory.mktemp("hostile")
    venv_root = install(tmp / "venvs")
    token = f"h1+{secrets.token_urlsafe(18)}/{secrets.token_urlsafe(6)}=="
    cp = ControlPlane(pools=("default",), token=token, state_dir=str(tmp / "cp-state"))
    issued: list[dict[str, Any]] = []
    hand_out = cp.executor_configs

    def recording(executor_ids: list[str] | None = None) -> list[dict[str, Any]]:
        configs = hand_out(executor_ids)
        issued.extend(configs)
        return configs

    cp.executor_configs = recording  # type: ignore[method-assign]
    with cp, pytest.MonkeyPatch.context() as patch:
        for name, value in HOST_KEYS.items():
            patch.setenv(name, value)
        pools = [{"id": "default", "max_workers": 2, "limits": {"kill_grace_s": 30}}]
        with running_executor(cp, tmp / "state", venv_root, pools=pools) as harness:
            yield HostileWorld(harness, tmp, issued)
