"""The fault suite's world: a control plane in-process, executors as real child processes.

``FaultWorld`` owns everything one test starts (control plane, executors, TCP proxies) and
stops it at the end, then checks that no recipe process outlived the test and records the
test's figures (runs, completed, duplicates, lost, orphans) for the session summary.
Requests run ``simrecipe.py`` (a stand-in CLI in a fake bundled venv, ``faultsim``) unless a
test asks for the real datahub CLI; its ledger (``tests.faults.ledger``) tells how often and how
each request ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from executor.local.controlplane.server import ControlPlane
from executor.pool.outcome import INTERRUPTED_MARKER
from executor.sandbox.orphans import MARKER_VAR
from tests.faults.ledger import SIM_PLUGIN, Ledger, wait_until
from tests.faults.tcpproxy import TcpProxy
from tests.fixtures.controlplane import graphql
from tests.service.processes import ExecutorProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULT = "dataHubExecutionRequestResult"
EXTEND = b"ChangeMessageVisibility"
TERMINAL = frozenset({"SUCCESS", "FAILURE", "TIMEOUT", "CANCELLED", "ABORTED", "DUPLICATE"})
INTERRUPTED = INTERRUPTED_MARKER
CREATE_SOURCE = "mutation($input: UpdateIngestionSourceInput!) { createIngestionSource(input: $input) }"
RUN_SOURCE = (
    "mutation($input: CreateIngestionExecutionRequestInput!) "
    "{ createIngestionExecutionRequest(input: $input) }"
)


@dataclass(frozen=True)
class FigureRow:
    """What one test measured."""

    test: str
    runs: int
    completed: int
    duplicates: int
    lost: int
    orphans: int


FIGURES: list[FigureRow] = []
"""Rows of this session (of this process); ``figures.py`` gathers them from the reports."""


@dataclass
class Request:
    """One submitted execution request and the gate file that lets its simrecipe finish."""

    urn: str
    gate: Path

    @property
    def run_id(self) -> str:
        return self.urn.rsplit(":", 1)[-1]


class Executor:
    """``remote-executor run -c FILE`` as a child process, with its own YAML config."""

    def __init__(self, world: FaultWorld, name: str, config: dict[str, Any], env: dict[str, str]) -> None:
        self.name = name
        path = world.tmp / f"{name}-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(config))
        full_env = {"DATAHUB_GMS_TOKEN": world.token, **env}
        self.process = ExecutorProcess(["run", "-c", str(path)], full_env)
        self.pid = self.process.proc.pid

    def logged(self, predicate: Callable[[dict[str, Any]], bool], since: int = 0) -> list[dict[str, Any]]:
        """Log records (from index ``since``) that match."""
        return [r for r in self.process.lines[since:] if predicate(r)]

    def wait_log(self, text: str, timeout_s: float = 60.0, since: int = 0) -> dict[str, Any]:
        """The first record from ``since`` on whose message contains ``text``."""
        def found() -> dict[str, Any] | None:
            exited = self.process.proc.poll() is not None
            match = next(iter(self.logged(lambda r: text in r.get("msg", ""), since)), None)
            if match is None and exited:
                raise AssertionError(f"{self.name} exited:\n" + "".join(self.process.raw[-30:]))
            return match
        return dict(wait_until(found, timeout_s, f"{self.name} to log {text!r}"))

    def mark(self) -> int:
        """An index into the log: ``since=mark()`` looks only at what comes after now."""
        return len(self.process.lines)

    def count(self, text: str, since: int = 0) -> int:
        return len(self.logged(lambda r: text in r.get("msg", ""), since))

    def signal(self, signum: int) -> None:
        self.process.proc.send_signal(signum)

    def kill9(self) -> None:
        self.process.proc.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.process.wait(timeout_s)

    @property
    def running(self) -> bool:
        return self.process.proc.poll() is None

    def text(self) -> str:
        return "".join(self.process.raw)


@dataclass
class FaultWorld:
    """Everything one fault test starts; ``close()`` stops it all and records the figures."""

    tmp: Path
    venv_root: Path
    test_name: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    cp: ControlPlane | None = None
    cp_args: dict[str, Any] = field(default_factory=dict)
    executors: list[Executor] = field(default_factory=list)
    proxies: list[TcpProxy] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)
    """Other servers a test started (anything with ``stop()``)."""
    requests: list[Request] = field(default_factory=list)
    ledger: Ledger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.tmp / "ledger")

    # -- control plane ---------------------------------------------------------------------
    def start_cp(self, **kwargs: Any) -> ControlPlane:
        """Start the control plane (pool ``default``); remembers ports for ``restart_cp``."""
        self.cp_args = {"pools": ("default",), "state_dir": str(self.tmp / "cp-state"), **kwargs}
        self.cp = ControlPlane(token=self.token, **self.cp_args).start()
        self.cp_args.update(port=int(self.cp.gms_url.rsplit(":", 1)[1]),
                            gateway_port=int(self.cp.sqs_gateway.rsplit(":", 1)[1]))
        return self.cp

    def stop_cp(self) -> None:
        if self.cp is not None:
            self.cp.stop()
            self.cp = None

    def restart_cp(self) -> ControlPlane:
        """A new control plane on the same ports, token and state (moto's queues start empty)."""
        self.stop_cp()
        self.cp = ControlPlane(token=self.token, **self.cp_args).start()
        return self.cp

    @property
    def live_cp(self) -> ControlPlane:
        assert self.cp is not None, "the control plane is not running"
        return self.cp

    def proxy(self, port: int, name: str) -> TcpProxy:
        """A started TCP proxy to ``127.0.0.1:port``, stopped at the end."""
        proxy = TcpProxy("127.0.0.1", port, name).start()
        self.proxies.append(proxy)
        return proxy

    def sqs_proxy(self) -> TcpProxy:
        """A proxy in front of the SQS gateway, in the queue URLs the leases hand out; it counts
        ``ChangeMessageVisibility`` calls (``seen[EXTEND]``)."""
        cp = self.live_cp
        proxy = self.proxy(int(cp.sqs_gateway.rsplit(":", 1)[1]), "sqs")
        proxy.watch(EXTEND)
        cp.sqs_public_url = self.cp_args["sqs_public_url"] = proxy.url
        return proxy

    def gms_proxy(self) -> TcpProxy:
        """A proxy in front of GMS (for executors started with ``gms_url=proxy.url``)."""
        return self.proxy(int(self.live_cp.gms_url.rsplit(":", 1)[1]), "gms")

    # -- executors -------------------------------------------------------------------------
    def executor(self, name: str = "a", *, state: str | None = None, gms_url: str | None = None,
                 env: dict[str, str] | None = None, drain_s: float = 3.0, gms_timeout_s: float = 2.0,
                 pools: list[dict[str, Any]] | None = None, **pool: Any) -> Executor:
        """Start an executor; ``state`` names its state dir (same name = same host's outbox).

        ``pool`` overrides the settings of its one pool ``default``; ``pools`` instead lists
        several pools, each as such overrides (with its ``id``)."""
        defaults = {
            "id": "default", "max_workers": 2, "poll_wait_s": 1, "visibility_s": 10,
            "progress_interval_s": 1, "signal_poll_interval_s": 1,
            "limits": {"kill_grace_s": 2},
            "venvs": {"bundled_root": str(self.venv_root), "dependency_resolution": False},
            "secrets": {"stores": ["env", "datahub"]},
        }
        settings = [{**defaults, **p} for p in (pools or [pool])]
        config = {
            "gms": {"url": gms_url or self.live_cp.gms_url, "timeout_s": gms_timeout_s},
            "state_dir": str(self.tmp / f"state-{state or name}"),
            "logging": {"format": "json", "level": "INFO"},
            "observability": {"host": "127.0.0.1", "port": 0},
            "shutdown": {"drain_s": drain_s, "kill_grace_s": 2},
            "pools": settings,
        }
        executor = Executor(self, name, config, {"DATAHUB_TELEMETRY_ENABLED": "false", **(env or {})})
        self.executors.append(executor)
        return executor

    # -- requests --------------------------------------------------------------------------
    def submit(self, *, child: bool = False, exit_code: int = 0, recipe: dict[str, Any] | None = None,
               version: str = "bundled", pool: str = "default", extra_args: dict[str, str] | None = None,
               **sim: Any) -> Request:
        """Create a source and request a run, as a DataHub user does (GraphQL); ``sim`` adds
        settings of the stand-in recipe (``duration_s``, a ``secret`` reference...)."""
        gate = self.tmp / f"gate-{uuid.uuid4().hex[:8]}"
        recipe = recipe or {
            "source": {"type": SIM_PLUGIN, "config": {
                "ledger": str(self.ledger.directory), "gate": str(gate),
                "child": child, "exit_code": exit_code, **sim,
            }},
            "sink": {"type": "console"},
        }
        source_input = {"name": f"fault source {len(self.requests)}", "type": recipe["source"]["type"],
                        "config": {"recipe": json.dumps(recipe), "version": version, "executorId": pool}}
        if extra_args:
            source_input["config"]["extraArgs"] = [{"key": k, "value": v} for k, v in extra_args.items()]
        source = graphql(self.live_cp, CREATE_SOURCE, {"input": source_input})["createIngestionSource"]
        urn = graphql(self.live_cp, RUN_SOURCE, {"input": {"ingestionSourceUrn": source}})
        request = Request(str(urn["createIngestionExecutionRequest"]), gate)
        self.requests.append(request)
        return request

    def open_gate(self, request: Request) -> None:
        request.gate.touch()

    def result(self, urn: str) -> dict[str, Any] | None:
        return self.live_cp.get_aspect(urn, RESULT)

    def history(self, urn: str) -> list[dict[str, Any]]:
        return self.live_cp.aspect_history(urn, RESULT)

    def wait_status(self, request: Request, statuses: set[str] | frozenset[str] = TERMINAL,
                    timeout_s: float = 60.0) -> dict[str, Any]:
        """The request's result once its status is one of ``statuses``."""
        def done() -> dict[str, Any] | None:
            result = self.result(request.urn)
            return result if result and result.get("status") in statuses else None
        return dict(wait_until(done, timeout_s, f"{request.run_id} to reach {sorted(statuses)}"))

    # -- the queue, read on moto directly --------------------------------------------------
    def queue_counts(self, dlq: bool = False, pool: str = "default") -> tuple[int, int]:
        """(visible, in flight) on the pool's queue (or its dead-letter queue)."""
        cp = self.live_cp
        client = moto_client(cp)
        try:
            url = cp.dlq_url(pool) if dlq else cp.queue_url(pool)
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            return int(attrs[names[0]]), int(attrs[names[1]])
        finally:
            client.close()

    def send_raw(self, bodies: list[str]) -> None:
        """Put raw bodies straight onto the pool's queue (moto), as a misbehaving producer would."""
        client = moto_client(self.live_cp)
        try:
            for body in bodies:
                client.send_message(QueueUrl=self.live_cp.queue_url("default"), MessageBody=body)
        finally:
            client.close()

    # -- the end ---------------------------------------------------------------------------
    def close(self, failed: bool) -> None:
        """Stop executors, proxies and the control plane; check orphans; record figures."""
        for executor in self.executors:
            if executor.running:
                executor.signal(signal.SIGTERM)
        for executor in self.executors:
            try:
                executor.wait(60)
            except Exception:
                executor.process.kill()
        outcomes = {r.urn: self.result(r.urn) if self.cp is not None else None for r in self.requests}
        for proxy in [*self.proxies, *self.servers]:
            proxy.stop()
        self.stop_cp()
        orphans = self.orphans()
        for pid in orphans:
            _kill_quietly(pid)
        completed = sum(1 for r in outcomes.values() if r and r.get("status") in TERMINAL
                        and not str(r.get("report", "")).startswith(INTERRUPTED))
        row = FigureRow(self.test_name, len(self.requests), completed,
                        sum(self.ledger.duplicates(r.run_id) for r in self.requests),
                        len(self.requests) - completed, len(orphans))
        if failed:
            for executor in self.executors:  # pytest shows this with the failure; the whole log stays
                (self.tmp / f"executor-{executor.name}.log").write_text(executor.text())
                print(f"---- last log lines of executor {executor.name} ----")
                print("".join(executor.process.raw[-40:]))
        else:
            FIGURES.append(row)
        assert not orphans, f"recipe processes outlived the test: {orphans}"

    def orphans(self) -> list[int]:
        """Recipe processes still alive: any the ledger knows, any with our executors' marker."""
        ours = {e.pid for e in self.executors}
        alive = sorted({pid for pid, seen in self.ledger.processes() if _alive(pid, seen)})
        for proc in psutil.process_iter():
            try:
                marker = proc.environ().get(MARKER_VAR, "")
            except psutil.Error:
                continue
            owner = marker.partition(":")[0]
            if owner.isdigit() and int(owner) in ours and proc.pid not in alive:
                alive.append(proc.pid)
        return alive


def moto_client(cp: ControlPlane) -> Any:
    """A boto3 SQS client on moto itself (any credentials), for inspection and raw sends."""
    import boto3

    from executor.local.controlplane.aws import REGION

    return boto3.session.Session().client(
        "sqs", endpoint_url=cp.sqs_endpoint, region_name=REGION,
        aws_access_key_id="inspect", aws_secret_access_key="inspect",
    )


def _alive(pid: int, seen: float) -> bool:
    """True if ``pid`` is the live process recorded at ``seen`` (not a later reuse of the pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() <= seen + 1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
