"""The executor's CPU per trivial task by thread: ``python -m bench.task_cpu N ROUNDS LOGS [phases] [batch]``.

Starts the local control plane and a one-worker executor (``prefetch: 1``, as the bench's
throughput row), runs N trivial stand-in tasks one after the other (each submitted once the
previous result is in), ``ROUNDS`` times, and prints the executor's CPU per task by thread
and how often each thread was scheduled in per task (its wake-ups).

The long-lived threads name themselves for the kernel (``poller@default``, ``reporters``, ...);
the per-task ones (the sandbox's supervisor and pipe threads) would carry the name of the
thread that started them, so the executor child gets a ``sitecustomize`` on its ``PYTHONPATH``
(``NAMING``, this measure's alone) that names every Python thread for the kernel after its
Python name, task id cut off. They live a few tens of milliseconds, so a sampler reads
``/proc/<pid>/task/*/schedstat`` every few milliseconds and keeps each thread's last figure (a
lower bound for those that end between two samples; a reused thread's CPU goes to the name it
has at each sample). "threads gone before a sample" is the
process's CPU (its CPU clock) less every figure seen. The spawn server (a child process)
is counted apart.

A sampled thread's CPU goes to the name it has *at the sample*, so the last part of a job
that ends between two samples (a Task's settling, its strand's end) is charged to ``spare``,
the name its thread takes once the job is done. The ``sitecustomize`` therefore also counts
each job of the executor's spare threads exactly: its thread's CPU (its CPU clock) and times
scheduled in (``/proc/thread-self/schedstat``) read at the job's start and end, summed by kind (``task``,
``sandbox``, ``sandbox-out``) and written to a file when the executor gets ``SIGUSR2``
(the bench's signal; the executor uses none). "jobs" lines give those sums, and "spare
threads between jobs" what the spare threads spent outside them (naming, waiting, lingering).
With ``phases`` the steps of a task's path (``PHASES``: the Task's handlers, the run's start,
the outbox write, the Reporter's and the resolver's turns) are counted the same way.

``LOGS``: that many old task logs are put beside the pool's first ones before measuring (a
long-lived executor keeps 500 by default; the bench's executors start empty). With ``batch``
each round's N requests are created at once, as the bench's throughput row does (the poller
then finds the next message waiting), instead of each after the previous result. Run it under
``flock`` like the bench; other load on the machine inflates every figure alike.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from loguru import logger

from bench.world import World, process_cpu_clock

SAMPLE_S = 0.002
NAMING = """
import ctypes, re, threading
_libc = ctypes.CDLL(None)
_run = threading.Thread.run
def _named_run(self):
    name = re.sub(r"[0-9a-f]{8,}.*$", "", self.name)[:15]
    _libc.prctl(15, ctypes.c_char_p(name.encode()), 0, 0, 0)
    _count_jobs()
    _run(self)
threading.Thread.run = _named_run

import json, os, signal, time
_jobs = {}
_jobs_lock = threading.Lock()
_dumps = [0]
def _sched():
    # The thread's CPU clock, not schedstat's first field: that one is brought up to date only
    # when the thread is switched (or at a tick), so a reading taken while it runs misses the
    # current slice, and a phase with a sleep in it was charged the slice run before it began.
    with open("/proc/thread-self/schedstat") as stat:
        fields = stat.read().split()
    return time.thread_time_ns(), int(fields[2])
def _counted(run):
    def counted(self):
        ns, runs = _sched()
        try:
            run(self)
        finally:
            ns_end, runs_end = _sched()
            kind = re.sub(r"-[0-9a-f]{6,}.*$", "", self.name.rsplit("/", 1)[-1])
            kind = re.sub(r"^task[-:].*", "task", kind)
            _add(_jobs, kind, ns_end - ns, runs_end - runs)
    return counted
def _add(table, name, ns, runs):
    with _jobs_lock:
        total = table.setdefault(name, [0, 0, 0])
        total[0] += ns
        total[1] += runs
        total[2] += 1
_phases = {}
def _timed(name, fn):
    def timed(*args, **kwargs):
        ns, runs = _sched()
        try:
            return fn(*args, **kwargs)
        finally:
            ns_end, runs_end = _sched()
            _add(_phases, name, ns_end - ns, runs_end - runs)
    return timed
def _wrap_phases(spec):
    import importlib
    for where in filter(None, spec.split(",")):
        module, _, qualname = where.partition(":")
        owner = importlib.import_module(module)
        *path, attr = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, attr, _timed(qualname, getattr(owner, attr)))
def _dump(*_):
    _dumps[0] += 1
    with _jobs_lock:
        text = json.dumps({"dump": _dumps[0], "jobs": _jobs, "phases": _phases})
    with open(os.environ["TASK_CPU_JOBS"] + ".tmp", "w") as out:
        out.write(text)
    os.replace(os.environ["TASK_CPU_JOBS"] + ".tmp", os.environ["TASK_CPU_JOBS"])
_patched = []
def _count_jobs():
    # At the first thread's start, not at import: the interpreter imports this module before it
    # puts the working directory (the tree under measure) first on the path, so importing the
    # executor here would load the installed tree's code instead.
    with _jobs_lock:
        if _patched or not os.environ.get("TASK_CPU_JOBS"):
            return
        _patched.append(True)
        from executor.supervision import spare_threads
        spare_threads.Job.run = _counted(spare_threads.Job.run)
        _wrap_phases(os.environ.get("TASK_CPU_PHASES", ""))
if os.environ.get("TASK_CPU_JOBS"):
    signal.signal(signal.SIGUSR2, _dump)
"""
"""The executor child's ``sitecustomize``: each thread named for the kernel (``PR_SET_NAME``),
and the spare threads' jobs counted exactly (see the module doc)."""
SPARE_GROUPS = frozenset({"task strand", "spare", "sandbox", "sandbox-out", "sandbox-log", "warm-spare",
                          "sandbox-far"})
"""The sampled groups of the spare threads (the kernel's names of their jobs: the Task's strand,
the run, its output, its log, the warm spare's making, the far looks) and ``spare`` between jobs."""
PHASES = ",".join([
    *(f"executor.pool.task:Task.{name}" for name in (
        "_prepare", "_admitted", "_request_secrets", "_first_running", "_launch", "_finish_of",
        "_settle")),
    "executor.pool.sandboxing:SandboxLauncher.prestart",
    "executor.reporting.outbox:Outbox.put",
    "executor.supervision.actor:SupervisedActor._end",
    "executor.pool.reporter:Reporter.handle",
    "executor.pool.resolver:SecretResolver.handle",
])
"""With ``phases``: the steps of a task's path timed like the jobs (nested ones count in both;
each timing reads ``schedstat`` twice, about 20-40 us, so the totals grow by that much)."""


def _threads(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (kernel name, CPU ns, times scheduled in) of every live thread of ``pid``; the
    last is ``schedstat``'s count of time slices: each wake-up (a futex, a poll, the GIL) is one."""
    found: dict[int, tuple[str, int, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            where = f"/proc/{pid}/task/{tid}"
            with open(f"{where}/comm") as comm, open(f"{where}/schedstat") as stat:
                fields = stat.read().split()
                found[int(tid)] = (comm.read().strip(), int(fields[0]), int(fields[2]))
        except (OSError, ValueError):
            continue
    return found


def _process_ns(pid: int) -> int:
    """The whole process's CPU ns, dead threads included (its CPU clock, as ``world.own_cpu``)."""
    return time.clock_gettime_ns(process_cpu_clock(pid))


def _group(name: str, tid: int, pid: int) -> str:
    if tid == pid:
        return "main"
    if re.fullmatch(r"task[-:].*|task", name):
        return "task strand"
    return re.sub(r"-[0-9a-f]{6,}.*$", "-<id>", name)


class Sampler:
    """Samples every thread of ``pid`` every ``SAMPLE_S`` and charges what each spent since its
    previous sample to the group of the name it has now: a spare thread (the executor's
    ``spare_threads``) runs a Task's strand, then a sandbox's supervisor or reader, renaming
    itself for each, so a thread's CPU is split by what it was doing (to within a sample)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.last: dict[int, tuple[int, int]] = {}
        self.cpu: collections.Counter[str] = collections.Counter()
        self.runs: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="task-cpu-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self.last = {tid: (ns, count) for tid, (_, ns, count) in _threads(self.pid).items()}
        self.process_before = _process_ns(self.pid)
        self._thread.start()
        return self

    def _sample(self) -> None:
        for tid, (name, ns, count) in _threads(self.pid).items():
            ns_before, count_before = self.last.get(tid, (0, 0))
            group = _group(name, tid, self.pid)
            self.cpu[group] += ns - ns_before
            self.runs[group] += count - count_before
            self.last[tid] = (ns, count)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.process_after = _process_ns(self.pid)

    def split(self) -> tuple[dict[str, float], dict[str, int]]:
        """Thread group -> CPU ns spent during the window, and -> times scheduled in (a lower
        bound for threads that end between two samples)."""
        groups: dict[str, float] = dict(self.cpu)
        groups["threads gone before a sample"] = (
            self.process_after - self.process_before - sum(groups.values()))
        return groups, dict(self.runs)


def _server_ns(pid: int) -> int:
    total = 0
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for cpid in child.read_text().split():
            try:
                total += _process_ns(int(cpid))
            except (OSError, ValueError):
                continue
    return total


def read_jobs(pid: int, path: Path, timeout_s: float = 10.0) -> dict[str, list[int]]:
    """The executor's sums (job kind or phase -> [CPU ns, times scheduled in, calls]):
    ``SIGUSR2`` makes it write them to ``path`` (the ``sitecustomize``); waits for that dump.
    Phases are keyed ``phase <name>``."""
    before = _dump_number(path)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _dump_number(path) > before:
            dump = json.loads(path.read_text())
            return {**dump["jobs"], **{f"phase {k}": v for k, v in dump["phases"].items()}}
        time.sleep(SAMPLE_S)
    raise TimeoutError("the executor wrote no job sums (is its sitecustomize loaded?)")


def _dump_number(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["dump"])
    except (OSError, ValueError, KeyError):
        return 0


def run_round(
    world: World, pid: int, source: str, count: int, jobs_file: Path, batch: bool = False
) -> tuple[dict[str, float], dict[str, float], float, dict[str, tuple[float, float]]]:
    """CPU ms and wake-ups per task by thread group over ``count`` tasks, the spawn server's ms
    per task, and each job kind's exact ms and wake-ups per task. With ``batch`` the ``count``
    requests are created at once, then awaited (the bench's throughput row), else one by one."""
    server_before = _server_ns(pid)
    jobs_before = read_jobs(pid, jobs_file)
    with Sampler(pid) as sampler:
        if batch:
            for urn in [world.submit(source)[0] for _ in range(count)]:
                world.wait_result(urn)
        for _ in range(0 if batch else count):
            urn, _created = world.submit(source)
            world.wait_result(urn)
    jobs_after = read_jobs(pid, jobs_file)
    server = (_server_ns(pid) - server_before) / 1e6 / count
    cpu, runs = sampler.split()
    jobs = {kind: ((ns - jobs_before.get(kind, [0, 0, 0])[0]) / 1e6 / count,
                   (woken - jobs_before.get(kind, [0, 0, 0])[1]) / count)
            for kind, (ns, woken, _n) in jobs_after.items()}
    return ({k: v / 1e6 / count for k, v in cpu.items()}, {k: v / count for k, v in runs.items()},
            server, jobs)


def print_round(index: int, split: dict[str, float], runs: dict[str, float], server: float,
                jobs: dict[str, tuple[float, float]]) -> None:
    """One round's table: the sampled split by thread, then the spare threads' jobs exactly."""
    total = sum(split.values())
    print(f"round {index + 1}: {total:.2f} ms per task in the executor, "
          f"spawn server {server:.2f} ms (load {os.getloadavg()[0]:.2f}); "
          f"ms and times scheduled in per task")
    for name, ms in sorted(split.items(), key=lambda kv: -kv[1]):
        woken = f"{runs[name]:6.1f}" if name in runs else "      "
        print(f"  {ms:7.2f}  {woken}  {name}")
    spare_ms = sum(ms for name, ms in split.items() if name in SPARE_GROUPS)
    spare_runs = sum(runs.get(name, 0.0) for name in SPARE_GROUPS)
    phases = {k: v for k, v in jobs.items() if k.startswith("phase ")}
    jobs = {k: v for k, v in jobs.items() if k not in phases}
    print("  jobs of the spare threads, counted exactly:")
    for kind, (job_ms, job_woken) in sorted(jobs.items(), key=lambda kv: -kv[1][0]):
        print(f"  {job_ms:7.2f}  {job_woken:6.1f}  job {kind}")
    print(f"  {spare_ms - sum(ms for ms, _ in jobs.values()):7.2f}  "
          f"{spare_runs - sum(w for _, w in jobs.values()):6.1f}  spare threads between jobs")
    for phase, (phase_ms, phase_woken) in phases.items():
        print(f"  {phase_ms:7.2f}  {phase_woken:6.1f}  {phase}")


def add_old_logs(state_dir: Path, count: int) -> None:
    """``count`` task logs of the last few days in every logs directory under ``state_dir``."""
    now = time.time()
    for logs in (p for p in state_dir.rglob("logs") if p.is_dir()):
        for index in range(count):
            path = logs / f"old-{index:05d}.log"
            path.write_bytes(b"an old task's log\n")
            os.utime(path, (now - 86400 - index * 60, now - 86400 - index * 60))


def main() -> int:
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    old_logs = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if "phases" in sys.argv[4:]:
        os.environ["TASK_CPU_PHASES"] = PHASES
    with tempfile.TemporaryDirectory(prefix="bench-task-cpu-") as tmp:
        naming = Path(tmp) / "naming"
        naming.mkdir()
        (naming / "sitecustomize.py").write_text(NAMING)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(naming), os.environ.get("PYTHONPATH")]))
        jobs_file = Path(tmp) / "jobs.json"
        os.environ["TASK_CPU_JOBS"] = str(jobs_file)
        world = World(Path(tmp), ("default",))
        try:
            child = world.executor([{"id": "default", "max_workers": 1, "prefetch": 1}])
            source = world.source("default", {"mode": "trivial"})
            for _ in range(3):
                world.wait_result(world.submit(source)[0])
            for state in Path(tmp).glob("state-*"):
                add_old_logs(state, old_logs)
            for index in range(rounds):
                print_round(index, *run_round(world, child.proc.pid, source, count, jobs_file,
                                              batch="batch" in sys.argv[4:]))
        finally:
            world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
