"""What the executor rows run against: the local control plane in this process, executors as children.

The control plane (GMS API, SQS gateway, moto) runs in the bench's own process; each executor is
a real ``remote-executor run -c FILE`` child whose recipes are the stand-in CLI (``standin.py`` as
``bin/datahub`` of a fake bundled venv). The executor is measured from outside: psutil on its
pid, and timestamps the stand-in writes. The moment a request's message is sent to SQS is taken
in the control plane's dispatch (just before ``SendMessage``), the moment of the GraphQL create
call just before the HTTP request.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

from executor.local.controlplane.server import ControlPlane
from tests.faults.ledger import wait_until

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PLUGIN = "benchsim"
SECRET_NAME = "BENCH_SECRET"
SECRET_VALUE = "bench-secret-7f3a9c"
RESULT = "dataHubExecutionRequestResult"
TERMINAL = frozenset({"SUCCESS", "FAILURE", "TIMEOUT", "CANCELLED", "ABORTED", "DUPLICATE"})
CREATE_SOURCE = "mutation($input: UpdateIngestionSourceInput!) { createIngestionSource(input: $input) }"
RUN_SOURCE = (
    "mutation($input: CreateIngestionExecutionRequestInput!) "
    "{ createIngestionExecutionRequest(input: $input) }"
)
CREATE_SECRET = "mutation($input: CreateSecretInput!) { createSecret(input: $input) }"
BENCH_TICK_S = 0.005
"""How often the bench polls a condition: finer than the tests' tick, as rows run back to back."""


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, tick_s: float = BENCH_TICK_S) -> Any:
    """The tests' ``wait_until`` at the bench's finer tick (a coarse one would slow sequential rows)."""
    return wait_until(condition, timeout_s, what, tick_s)


def make_venv_root(root: Path) -> Path:
    """``<root>/benchsim-bundled/bin/datahub`` = the stand-in CLI, run by this interpreter."""
    bin_dir = root / f"{PLUGIN}-bundled" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if not (bin_dir / "python").exists():
        (bin_dir / "python").symlink_to(sys.executable)
    script = bin_dir / "datahub"
    script.write_text(f"#!{sys.executable}\n" + (HERE / "standin.py").read_text())
    script.chmod(0o755)
    return root


def read_stamp(stamps: Path, name: str) -> dict[str, float] | None:
    try:
        return dict(json.loads((stamps / name).read_text()))
    except (OSError, ValueError):
        return None


class ExecutorChild:
    """One ``remote-executor run`` child with its config; its log goes to a file."""

    def __init__(self, tmp: Path, cp: ControlPlane, venv_root: Path, pools: list[dict[str, Any]],
                 command: Sequence[str] = ("-m", "executor")) -> None:
        name = uuid.uuid4().hex[:6]
        self.state_dir = tmp / f"state-{name}"
        config = {
            "gms": {"url": cp.gms_url, "timeout_s": 10},
            "state_dir": str(self.state_dir),
            "logging": {"format": "text", "level": os.environ.get("BENCH_EXECUTOR_LOG_LEVEL", "INFO")},
            "observability": {"host": "127.0.0.1", "port": 0},
            "shutdown": {"drain_s": 5, "kill_grace_s": 2},
            "pools": [self._pool(p, venv_root) for p in pools],
        }
        path = tmp / f"executor-{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAHUB_", "REMOTE_EXECUTOR_"))}
        env.update(DATAHUB_GMS_TOKEN=cp.token, DATAHUB_TELEMETRY_ENABLED="false")
        self.log_path = tmp / f"executor-{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *command, "run", "-c", str(path)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.ps = psutil.Process(self.proc.pid)

    @staticmethod
    def _pool(settings: dict[str, Any], venv_root: Path) -> dict[str, Any]:
        return {
            "max_workers": 1,
            "visibility_s": 60,
            "progress_interval_s": 5,
            "limits": {"kill_grace_s": 2, "output_mb": 4096},
            "venvs": {"bundled_root": str(venv_root), "dependency_resolution": False},
            "secrets": {"stores": ["env", "datahub"]},
            # every row measures one executor: the next task adopts a spare (BENCH_WARM_SPARE=0: none)
            "warm_spare": os.environ.get("BENCH_WARM_SPARE", "1") != "0",
            **settings,
        }

    def cpu(self) -> float:
        """The executor process's own CPU seconds (user + system; its recipes not included)."""
        return own_cpu(self.ps)

    def children_cpu(self) -> float:
        """CPU seconds of its reaped children: the exec wrappers and the recipes they became."""
        times = self.ps.cpu_times()
        return float(times.children_user + times.children_system)

    def stop(self) -> None:
        stop_child(self.proc)

    def finished_at(self, urn: str) -> float | None:
        """When the executor logged the request as finished (its log's ms timestamp, local time)."""
        key = urn.rsplit(":", 1)[-1]
        with open(self.log_path, errors="replace") as log:
            for line in log:
                if key in line and ": finished: " in line:
                    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        return None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def own_cpu(ps: psutil.Process) -> float:
    """A process's own CPU seconds (every thread, ended ones too; the children it reaped not
    included) to the nanosecond: the kernel's CPU clock of the process. psutil's ``cpu_times``
    counts clock ticks (10 ms), half a millisecond a task over a 20-task batch: a row near its
    target read one side of it or the other by the ticks. A process gone raises
    ``psutil.NoSuchProcess``, as ``cpu_times`` does."""
    try:
        return time.clock_gettime_ns(process_cpu_clock(ps.pid)) / 1e9
    except OSError:
        times = ps.cpu_times()
        return float(times.user + times.system)


def process_cpu_clock(pid: int) -> int:
    """The clock id of ``pid``'s CPU clock, as ``clock_getcpuclockid(3)`` makes it (Linux's
    ``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``; Python has no binding for it)."""
    return ((~pid) << 3) | 2


def task_cpu(pid: int | str, tid: int) -> float:
    """CPU seconds of one live thread from its ``schedstat`` (nanoseconds); 0 once it has gone.
    ``pid`` may be ``"self"``."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
            return int(stat.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def threads_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each live thread of ``pid`` by thread id (``task_cpu``): a window's figure
    is the sum over the threads alive at both ends, so a thread that ends in it (a spare thread
    letting go) is not subtracted."""
    tids = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir() if task.name.isdigit()]
    return {tid: task_cpu(pid, tid) for tid in tids}


def schedstat(task: Path) -> tuple[int, int] | None:
    """(on-CPU ns, times scheduled in) of the thread at ``/proc/<pid>/task/<tid>``; None once
    it has gone."""
    try:
        on_cpu, _, runs = (task / "schedstat").read_text().split()
        return int(on_cpu), int(runs)
    except (OSError, ValueError):
        return None


def threads_woken(pid: int) -> dict[int, int]:
    """How many times each live thread of ``pid`` was scheduled in (``schedstat``), by thread
    id: at rest, its wake-ups. A thread that ended is left out."""
    stats = {int(task.name): schedstat(task) for task in Path(f"/proc/{pid}/task").iterdir()}
    return {tid: stat[1] for tid, stat in stats.items() if stat is not None}


def stop_child(proc: subprocess.Popen[Any], wait_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``wait_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class World:
    """The control plane, the stand-in venv, the stamps directory, and the executors started."""

    def __init__(
        self, tmp: Path, pools: tuple[str, ...] = ("default",), direct: Collection[str] = ()
    ) -> None:
        """``direct``: pools whose leases point at moto itself (``ControlPlane.direct_sqs_pools``),
        as Celery's workers talk to moto and a real executor to AWS SQS; the others go through the
        control plane's gateway."""
        self.tmp = tmp
        self.cp = ControlPlane(pools=pools, state_dir=str(tmp / "cp-state"), direct_sqs_pools=direct).start()
        self.venv_root = make_venv_root(tmp / "venvs")
        self.stamps = tmp / "stamps"
        self.stamps.mkdir(exist_ok=True)
        self.sent: dict[str, float] = {}
        self.executors: list[ExecutorChild] = []
        self._session = requests.Session()
        self._sources: dict[tuple[str, str], str] = {}
        # The moment of the SQS send, taken where the control plane sends (no public hook there).
        dispatch = self.cp.ingestion._dispatch

        def stamped_dispatch(pool: str, urn: str) -> None:
            self.sent[urn] = time.time()
            dispatch(pool, urn)

        self.cp.ingestion._dispatch = stamped_dispatch
        self.graphql(CREATE_SECRET, {"input": {"name": SECRET_NAME, "value": SECRET_VALUE}})

    def sqs_server(self, pool: str) -> str:
        """The table's "SQS server" of a pool's rows: moto, or moto through the gateway."""
        return "moto" if pool in self.cp.direct_sqs_pools else "moto via gateway"

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer = self._session.post(
            f"{self.cp.gms_url}/api/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.cp.token}"},
            timeout=30,
        )
        body = answer.json()
        if answer.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"GraphQL failed: {answer.status_code} {body}")
        return dict(body["data"])

    def executor(
        self, pools: list[dict[str, Any]], command: Sequence[str] = ("-m", "executor")
    ) -> ExecutorChild:
        """An executor child; ``command`` (after the interpreter) runs its main (a probe may wrap it)."""
        child = ExecutorChild(self.tmp, self.cp, self.venv_root, pools, command)
        self.executors.append(child)
        return child

    def source(self, pool: str, config: dict[str, Any]) -> str:
        """A source whose recipe runs the stand-in with ``config`` (one per distinct config)."""
        recipe = {
            "source": {
                "type": PLUGIN,
                "config": {
                    "stamps": str(self.stamps),
                    "tag": "unused",
                    "password": f"${{{SECRET_NAME}}}",
                    **config,
                },
            },
            "sink": {"type": "console"},
        }
        key = (pool, json.dumps(recipe, sort_keys=True))
        if key not in self._sources:
            source_input = {
                "name": f"bench {len(self._sources)}",
                "type": PLUGIN,
                "config": {"recipe": json.dumps(recipe), "version": "bundled", "executorId": pool},
            }
            self._sources[key] = str(
                self.graphql(CREATE_SOURCE, {"input": source_input})["createIngestionSource"]
            )
        return self._sources[key]

    def submit(self, source: str) -> tuple[str, float]:
        """Request a run as a DataHub user does; (request URN, wall time just before the call)."""
        created = time.time()
        urn = self.graphql(RUN_SOURCE, {"input": {"ingestionSourceUrn": source}})
        return str(urn["createIngestionExecutionRequest"]), created

    def started(self, urn: str) -> dict[str, float] | None:
        return read_stamp(self.stamps, f"{urn.rsplit(':', 1)[-1]}.start")

    def result(self, urn: str) -> dict[str, Any] | None:
        value = self.cp.get_aspect(urn, RESULT)
        return value if value and value.get("status") in TERMINAL else None

    def result_written_at(self, urn: str) -> float:
        """Wall clock (ms resolution) when the control plane stored the request's terminal result:
        the end of its task where it lands, with no polling lag (Celery's end is stamped where its
        worker reaps the recipe)."""
        for stored in self.cp.aspects.history(urn, RESULT):
            if stored.value.get("status") in TERMINAL:
                return stored.created_ms / 1000
        raise RuntimeError(f"no terminal result of {urn}")

    def wait_result(self, urn: str, timeout_s: float = 120.0) -> dict[str, Any]:
        result: dict[str, Any] = wait_for(lambda: self.result(urn), timeout_s, f"the result of {urn}", 0.01)
        if result.get("status") != "SUCCESS":
            raise RuntimeError(f"{urn} ended {result.get('status')}: {str(result.get('report'))[:400]}")
        return result

    def close(self) -> None:
        for child in self.executors:
            child.stop()
        self._session.close()
        self.cp.stop()
