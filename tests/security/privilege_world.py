"""The world of the privilege tests: throwaway users, a control plane, a real executor process.

``throwaway_users`` (session; root only, else the tests skip with the reason) makes two system
users with ``useradd`` and removes them at the end: one runs the executor in the non-root
cases, the other is the pool's ``run_as``. ``SecurityWorld`` owns one test's files (in a
world-traversable temp dir, since a non-root executor and the recipe's uid must reach their
parts), the control plane (in this process) and the executor (``remote-executor run`` as a
child, through ``setpriv`` when it must not be root), and stops all of it at the end, checking
that no process of either user is left. The GMS token reaches the executor as
``DATAHUB_GMS_TOKEN``, the way the attacks on its environment need.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from executor.local.controlplane.server import ControlPlane
from tests.faults.ledger import wait_until
from tests.fixtures.controlplane import graphql
from tests.security.leftovers import text_left

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLUGIN = "hostile"
RESULT = "dataHubExecutionRequestResult"
TERMINAL = frozenset({"SUCCESS", "FAILURE", "TIMEOUT", "CANCELLED", "ABORTED", "DUPLICATE"})
CREATE_SOURCE = "mutation($input: UpdateIngestionSourceInput!) { createIngestionSource(input: $input) }"
RUN_SOURCE = ("mutation($input: CreateIngestionExecutionRequestInput!) "
              "{ createIngestionExecutionRequest(input: $input) }")


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Users:
    executor: Account
    recipe: Account


@pytest.fixture(scope="session")
def throwaway_users() -> Iterator[Users]:
    """Two system users for this session; removed (with anything they still run) at the end."""
    if os.geteuid() != 0:
        pytest.skip("making throwaway users needs root; the non-root and run_as cases cannot run")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    tag = uuid.uuid4().hex[:6]
    names = (f"resec-exec-{tag}", f"resec-recipe-{tag}")
    for name in names:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell",
                        "/usr/sbin/nologin", name], check=True, capture_output=True)
    accounts = [pwd.getpwnam(n) for n in names]
    try:
        yield Users(*(Account(a.pw_name, a.pw_uid, a.pw_gid) for a in accounts))
    finally:
        for account in accounts:
            kill_processes_of(account.pw_uid)
            subprocess.run(["userdel", account.pw_name], check=False, capture_output=True)


def live_processes_of(uid: int) -> list[psutil.Process]:
    """``uid``'s processes that have not exited (a zombie has: only its reaping is left, to
    whichever parent it has now), with their ``status``, ``ppid`` and ``cmdline`` read."""
    found = []
    for proc in psutil.process_iter(["uids", "status", "ppid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            alive = proc.info["status"] != psutil.STATUS_ZOMBIE
            if alive and proc.info["uids"] and proc.info["uids"].real == uid:
                found.append(proc)
    return found


def processes_of(uid: int) -> list[int]:
    """The pids of ``uid``'s processes that have not exited."""
    return [proc.pid for proc in live_processes_of(uid)]


def kill_processes_of(uid: int) -> list[str]:
    """SIGKILL every process of ``uid``; returns what they were (pid, state, parent, command)."""
    found = []
    for proc in live_processes_of(uid):
        found.append(f"{proc.pid} {proc.info['status']} ppid={proc.info['ppid']} "
                     f"{' '.join(proc.info['cmdline'] or [])[:200]}")
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return found


def make_hostile_venv(root: Path, script_name: str = "hostile_probe.py") -> None:
    """``<root>/hostile-bundled/bin/datahub`` = ``script_name`` of this folder, readable by every user."""
    bin_dir = root / f"{PLUGIN}-bundled" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    script = bin_dir / "datahub"
    script.write_text(f"#!{sys.executable}\n" + (HERE / script_name).read_text())
    for path in (root, root / f"{PLUGIN}-bundled", bin_dir, script):
        path.chmod(0o755)


@dataclass
class SecurityWorld:
    """One test's control plane, executor process and files; ``close()`` stops everything."""

    executor_user: Account | None
    recipe_user: Account | None
    isolation: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="resec-")))
    cp: ControlPlane | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    gates: list[socket.socket] = field(default_factory=list)
    cli: str = "hostile_probe.py"
    lease_seconds: float = 3600.0
    issued: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Every lease the control plane handed out (to the executor or to the test itself)."""

    def __post_init__(self) -> None:
        self.base.chmod(0o711)
        make_hostile_venv(self.base / "venvs", self.cli)
        self.state = self.base / "state"
        self.config_file = self.base / "config.yaml"
        cp = ControlPlane(token=self.token, pools=("default", "other", "third"),
                          state_dir=str(self.base / "cp"), lease_seconds=self.lease_seconds)
        hand_out = cp.executor_configs

        def recording(executor_ids: list[str] | None = None) -> list[dict[str, Any]]:
            configs = hand_out(executor_ids)
            self.issued.extend(configs)
            return configs

        cp.executor_configs = recording  # type: ignore[method-assign]
        self.cp = cp.start()

    # -- the executor ----------------------------------------------------------------------
    def pool_settings(self, pool: str, **extra: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "id": pool, "max_workers": 2, "poll_wait_s": 1, "visibility_s": 30,
            "progress_interval_s": 1, "signal_poll_interval_s": 1, "limits": {"kill_grace_s": 2},
            "venvs": {"bundled_root": str(self.base / "venvs"), "dependency_resolution": False},
            "secrets": {"stores": ["datahub"]}, "isolation": self.isolation, **extra,
        }
        if self.recipe_user is not None:
            settings["run_as"] = {"user": self.recipe_user.name}
        return settings

    def write_config(self, gms: dict[str, Any] | None = None, **pool: Any) -> None:
        config = {
            "gms": {"url": self.live_cp.gms_url, "timeout_s": 2, **(gms or {})},
            "state_dir": str(self.state), "work_dir": str(self.base / "work"),
            "logging": {"format": "json", "level": "INFO"},
            "observability": {"host": "127.0.0.1", "port": 0},
            "shutdown": {"drain_s": 3, "kill_grace_s": 2},
            "pools": [self.pool_settings("default", **pool), self.pool_settings("other", **pool)],
        }
        self.config_file.write_text(yaml.safe_dump(config))
        self.config_file.chmod(0o600)
        if self.executor_user is not None:
            for path in (self.config_file,):
                os.chown(path, self.executor_user.uid, self.executor_user.gid)

    def start(self, env: dict[str, str] | None = None) -> None:
        """``remote-executor run`` (as ``executor_user`` if set); returns once its tree is up."""
        if not self.config_file.exists():
            self.write_config()
        if self.executor_user is not None:
            self.state.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.state, self.executor_user.uid, self.executor_user.gid)
        prefix: list[str] = []
        if self.executor_user is not None:
            prefix = ["setpriv", f"--reuid={self.executor_user.uid}", f"--regid={self.executor_user.gid}",
                      "--clear-groups", "--"]
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("DATAHUB_", "REMOTE_EXECUTOR_", "AWS_"))}
        full_env = {**base_env, "DATAHUB_GMS_TOKEN": self.token, "DATAHUB_TELEMETRY_ENABLED": "false",
                    "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        self.starts += 1
        log = open(self.log_path(self.starts), "wb")  # noqa: SIM115 (the child holds it)
        with log:
            self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "executor", "run", "-c",
                                          str(self.config_file)], cwd=ROOT, env=full_env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_until(lambda: self._started_or_dead(), 90, "the executor to start")

    def _started_or_dead(self) -> bool:
        text = self.log_path(self.starts).read_text(errors="replace")
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the executor exited:\n{text[-3000:]}")
        return "executor started" in text

    def log_path(self, start: int) -> Path:
        return self.base / f"executor-{start}.log"

    def stop(self) -> None:
        """SIGTERM the executor and wait for it (SIGKILL after 60 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    @property
    def executor_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def live_cp(self) -> ControlPlane:
        assert self.cp is not None
        return self.cp

    # -- requests --------------------------------------------------------------------------
    def submit(self, config: dict[str, Any], pool: str = "default", plugin: str = PLUGIN,
               recipe: dict[str, Any] | None = None) -> str:
        """Create a source whose recipe runs the hostile CLI with ``config``; request a run."""
        recipe = recipe or {"source": {"type": plugin, "config": config}, "sink": {"type": "console"}}
        source_input = {"name": f"security source {uuid.uuid4().hex[:6]}", "type": recipe["source"]["type"],
                        "config": {"recipe": json.dumps(recipe), "version": "bundled", "executorId": pool}}
        source = graphql(self.live_cp, CREATE_SOURCE, {"input": source_input})["createIngestionSource"]
        urn = graphql(self.live_cp, RUN_SOURCE, {"input": {"ingestionSourceUrn": source}})
        return str(urn["createIngestionExecutionRequest"])

    def result(self, urn: str) -> dict[str, Any] | None:
        return self.live_cp.get_aspect(urn, RESULT)

    def wait_terminal(self, urn: str, timeout_s: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("the executor exited:\n" + self.executor_log()[-3000:])
            result = self.result(urn)
            return result if result and result.get("status") in TERMINAL else None
        return dict(wait_until(done, timeout_s, f"a terminal result for {urn}"))

    def open_gate(self) -> int:
        """A loopback port nobody listens on yet; ``release`` makes it accept."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.gates.append(sock)
        return int(sock.getsockname()[1])

    def release(self, port: int) -> None:
        next(s for s in self.gates if s.getsockname()[1] == port).listen(8)

    def executor_log(self) -> str:
        return "".join(self.log_path(i).read_text(errors="replace") for i in range(1, self.starts + 1))

    def every_output(self) -> str:
        """All the executor and its recipes left behind: logs, task logs, results, state files."""
        in_cp = self.base / "cp"
        return "\n".join([self.executor_log(), *text_left(self.base, lambda p: p.is_relative_to(in_cp))])

    # -- the end ---------------------------------------------------------------------------
    def close(self) -> None:
        for gate in self.gates:
            with contextlib.suppress(OSError):
                gate.listen(8)
        self.stop()
        for gate in self.gates:
            gate.close()
        if self.cp is not None:
            self.cp.stop()
            self.cp = None
        uids = [account.uid for account in (self.executor_user, self.recipe_user) if account is not None]
        # what the executor's exit kills by its parent-death signal may take a moment to be gone
        # on a loaded machine; a process still there after that has outlived the test.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(processes_of(uid) for uid in uids):
            time.sleep(0.05)
        left = [what for uid in uids for what in kill_processes_of(uid)]
        shutil.rmtree(self.base, ignore_errors=True)
        assert not left, f"processes of the test users outlived the test: {left}"
