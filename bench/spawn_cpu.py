"""What each piece of the sandbox adds to a recipe's CPU at its first line: a decomposition.

Usage (in the project's venv): ``python -m bench.spawn_cpu [ROUNDS] [VARIANT,...]``.
Each round starts the stand-in CLI (``standin.py`` as ``bin/datahub`` of a fake venv, as the
bench's rows do) once per variant, in a shuffled order, and reads its ``start`` stamp's
"cpu": its own ``getrusage(RUSAGE_SELF)`` just before its first line, i.e. everything the
process did from the fork on (the set-up between fork and exec, the exec, the interpreter's
start-up). The variants add the sandbox one piece at a time, from a bare ``Popen`` with the
full environment (the bench's floor) to what the executor does (``server-all``);
``popen-base-python`` runs the stand-in with the interpreter the venv was made from. It prints,
per variant, the median and quartiles, and the median of the paired differences with the
bare ``Popen`` of the same round (pairs taken seconds apart see the same machine speed).
With ``busy`` in the list, a spinning process runs beside a bare ``Popen``: whether another
busy thread on the two cores alone makes the same start-up cost more CPU time.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.world import make_venv_root, read_stamp
from executor.sandbox import build_env
from executor.sandbox.cgroups import TaskCgroup, detect_cgroups
from executor.sandbox.spawner import LAUNCHER, ServerPopen, SpawnServer

AS_BYTES = 8 << 30
MEMORY = 512 << 20
PIDS = 256
SPIN = "while True: pass"
SPIN_MEMORY = "import json\nwhile True: json.loads(json.dumps([{'k': i, 'v': str(i)} for i in range(20000)]))"
"""A busy neighbour that also walks memory (an interpreter serving HTTP does more of that)."""
TINY = ["/bin/true"]
"""The tiny program: its start costs little, so a difference the set-up makes stands out."""
Sample = tuple[float | None, float, float]
Proc = subprocess.Popen[bytes]
Spawn = Callable[[list[str], dict[str, str], Path, list[str]], Proc]


class Decomposition:
    """The stand-in, a spawn server, a work dir and a long-lived cgroup shared by every variant."""

    def __init__(self, tmp: Path) -> None:
        self.argv = [str(make_venv_root(tmp / "venvs") / "benchsim-bundled" / "bin" / "datahub"),
                     "ingest", "run", "-c", "-"]
        self.base_argv = [str(_base_python_copy(Path(self.argv[0]), tmp / "base-datahub")), *self.argv[1:]]
        self.stamps = tmp / "stamps"
        self.stamps.mkdir()
        self.work = tmp / "work"
        (self.work / "tmp").mkdir(parents=True)
        self.env = build_env(os.environ, {}, {}, self.work)
        self.server = SpawnServer()
        self.support = detect_cgroups()
        self.kept = TaskCgroup.create(self.support, "spawn-cpu-kept", MEMORY, PIDS)
        self.count = 0

    def close(self) -> None:
        self.server.close()
        if self.kept is not None:
            self.kept.remove()

    def variants(self) -> dict[str, Callable[[], Sample]]:
        """Name -> one sample (ms of the stand-in's CPU at its first line)."""
        full, scrubbed = dict(os.environ), self.env
        base = ["--parent", str(os.getpid())]
        limits = [*base, "--nofile", "1024", "--core", "0"]
        as_limit, fsize = [*base, "--as", str(AS_BYTES)], [*base, "--fsize", str(1 << 34)]
        return {
            "popen": lambda: self.sample(self.popen, full, None, []),
            "popen-base-python": lambda: self.sample(self.popen, full, None, [], base=True),
            "popen-env": lambda: self.sample(self.popen, scrubbed, None, []),
            "popen-env-cwd": lambda: self.sample(self.popen, scrubbed, self.work, []),
            "wrapper": lambda: self.sample(self.wrapper, scrubbed, self.work, limits),
            "server": lambda: self.sample(self.spawn, scrubbed, self.work, base),
            "server-full-env": lambda: self.sample(self.spawn, full, self.work, base),
            "server-nofile-core": lambda: self.sample(self.spawn, scrubbed, self.work, limits),
            "server-as": lambda: self.sample(self.spawn, scrubbed, self.work, as_limit),
            "server-fsize": lambda: self.sample(self.spawn, scrubbed, self.work, fsize),
            "server-cg-kept": lambda: self.sample(self.spawn, scrubbed, self.work, self.kept_options(base)),
            "server-cg-fresh": lambda: self.with_fresh_cgroup(base),
            "server-all": lambda: self.with_fresh_cgroup([*limits, "--as", str(AS_BYTES)]),
            "tiny-popen": lambda: self.sample(self.popen, full, None, [], tiny=True),
            "tiny-server": lambda: self.sample(self.spawn, scrubbed, self.work, base, tiny=True),
            "tiny-server-limits": lambda: self.sample(self.spawn, scrubbed, self.work, limits, tiny=True),
            "tiny-server-cg": lambda: self.with_fresh_cgroup(base, tiny=True),
            "tiny-server-all": lambda: self.with_fresh_cgroup([*limits, "--as", str(AS_BYTES)], tiny=True),
            "busy": lambda: self.busy_popen(1, SPIN),
            "busy-mem": lambda: self.busy_popen(1, SPIN_MEMORY),
            "busy-2": lambda: self.busy_popen(2, SPIN),
        }

    def kept_options(self, base: list[str]) -> list[str]:
        return [*base, *(o for d in (self.kept.dirs if self.kept else ()) for o in ("--cgroup", str(d)))]

    def with_fresh_cgroup(self, options: list[str], tiny: bool = False) -> Sample:
        group = TaskCgroup.create(self.support, f"spawn-cpu-{self.count}", MEMORY, PIDS)
        try:
            joined = [o for d in (group.dirs if group else ()) for o in ("--cgroup", str(d))]
            return self.sample(self.spawn, self.env, self.work, [*options, *joined], tiny)
        finally:
            if group is not None:
                group.remove()

    def busy_popen(self, count: int, code: str) -> Sample:
        """A bare ``Popen`` while ``count`` processes run ``code`` (one: the other core is busy, as
        while the executor and the control plane answer the run's calls; two: both are)."""
        spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
        try:
            time.sleep(0.05)  # let them start spinning
            return self.sample(self.popen, dict(os.environ), None, [])
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()

    def sample(self, spawn: Spawn, env: dict[str, str], cwd: Path | None, options: list[str],
               tiny: bool = False, base: bool = False) -> Sample:
        """One start: ms of CPU at the first line (None for the tiny program), ms in all, and
        its minor page faults in all (a forked child's copy-on-write shows there)."""
        self.count += 1
        tag = f"s{self.count}"
        recipe = {"source": {"config": {"stamps": str(self.stamps), "tag": tag}}}
        envelope = json.dumps({"__recipe_yaml__": json.dumps(recipe), "__secrets__": {}}).encode()
        argv = TINY if tiny else self.base_argv if base else self.argv
        proc = spawn(argv, env, cwd or Path.cwd(), options)
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):  # the tiny program reads nothing
            proc.stdin.write(b"" if tiny else envelope)
        proc.stdin.close()
        proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU through its exit
        proc.returncode = os.waitstatus_to_exitcode(status)
        if isinstance(proc, ServerPopen):
            self.server.reaped()
        stamp = None if tiny else read_stamp(self.stamps, f"{tag}.start")
        if proc.returncode != 0 or (stamp is None and not tiny):
            raise RuntimeError(f"sample {tag} failed: exit {proc.returncode}")
        first = None if stamp is None else float(stamp["cpu"]) * 1000
        return first, (usage.ru_utime + usage.ru_stime) * 1000, float(usage.ru_minflt)

    @staticmethod
    def popen(argv: list[str], env: dict[str, str], cwd: Path, _: list[str]) -> Proc:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd)

    @staticmethod
    def wrapper(argv: list[str], env: dict[str, str], cwd: Path, options: list[str]) -> Proc:
        return subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), *options, "--", *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, options: list[str]) -> Proc:
        return ServerPopen(self.server, options, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, cwd=cwd, env=env, bufsize=0)


def _base_python_copy(script: Path, to: Path) -> Path:
    """The stand-in run by the interpreter the venv was made from instead of the venv's own."""
    body = script.read_text().split("\n", 1)[1]
    to.write_text(f"#!{getattr(sys, '_base_executable', sys.executable)}\n{body}")
    to.chmod(0o755)
    return to


def run(rounds: int, wanted: list[str] | None) -> list[str]:
    """``rounds`` interleaved rounds of the wanted variants (all by default); the report lines."""
    with tempfile.TemporaryDirectory(prefix="spawn-cpu-") as tmp:
        box = Decomposition(Path(tmp))
        try:
            variants = box.variants()
            names = [n for n in variants if wanted is None or n in wanted or n in BASELINES]
            samples: dict[str, list[Sample]] = {n: [] for n in names}
            for name in names:  # one warm-up each (page cache, the server's start)
                variants[name]()
            for _ in range(rounds):
                for name in random.sample(names, len(names)):
                    samples[name].append(variants[name]())
        finally:
            box.close()
    return report(samples, box.kept is not None)


BASELINES = ("popen", "tiny-popen")


def report(samples: dict[str, list[Sample]], cgroups: bool) -> list[str]:
    """Per variant and metric: p50 [p25, p75], and the paired differences with its baseline."""
    lines = [f"{'variant':19s} {'first line: p50 [p25, p75]':>27s}  {'paired':>21s}   "
             f"{'in all: p50 [p25, p75]':>24s}  {'paired':>21s}  faults"]
    for name, values in samples.items():
        bare = samples["tiny-popen" if name.startswith("tiny") else "popen"]
        cells = []
        for metric in (0, 1):
            mine = [v[metric] for v in values]
            if mine[0] is None:
                cells.append(f"{'-':>27s}  {'-':>21s}")
                continue
            base = [b[metric] or 0.0 for b in bare]
            cells.append(f"{_quartiles([m or 0.0 for m in mine]):>27s}  "
                         f"{_quartiles([(m or 0.0) - b for m, b in zip(mine, base, strict=True)], '+'):>21s}")
        faults = statistics.median(v[2] for v in values)
        lines.append(f"{name:19s} {cells[0]}   {cells[1]}  {faults:6.0f}")
    lines.append(f"ms of the program's own CPU, {len(samples['popen'])} interleaved rounds; paired: "
                 "minus its baseline's in the same round (popen, tiny-popen)"
                 + ("" if cgroups else "; no writable cgroup here: the cg variants join none"))
    return lines


def _quartiles(values: list[float], sign: str = "") -> str:
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return f"{q2:{sign}.2f} [{q1:{sign}.2f}, {q3:{sign}.2f}]"


def main(argv: list[str]) -> None:
    rounds = int(argv[0]) if argv else 30
    wanted = argv[1].split(",") if len(argv) > 1 else None
    print("\n".join(run(rounds, wanted)))


if __name__ == "__main__":
    main(sys.argv[1:])
