"""Where the executor's time goes while it picks up trivial tasks: py-spy on its process.

Usage (in the project's venv, with ``pip install py-spy``): ``python -m bench.profile [N]``,
or ``python -m bench.profile output LINE`` for the output path (a 32 MiB flood of LINE-byte
lines read by a ``SandboxRun`` in this process, masking on).
It starts the local control plane and a one-worker executor like ``bench.suite``, runs N
trivial stand-in tasks one after the other under ``py-spy record --threads`` (wall-clock
samples of every thread while it is on the CPU), and prints the functions
of the executor's own code with the most samples: self time (on top of the stack) and total
(anywhere in the stack). Then it times the spawn alone, in this process: from the call to the
stand-in's first line for a bare ``Popen``, a ``SandboxRun`` through the exec wrapper and through the
spawn server, each without and with a task cgroup.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger

from bench.world import SECRET_VALUE, World, make_venv_root, read_stamp, wait_for
from executor.sandbox import SandboxRun, SandboxSpec, build_env
from executor.sandbox.cgroups import detect_cgroups
from executor.sandbox.spawner import SpawnServer


def _top(collapsed: Path, limit: int) -> list[str]:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "idle" in frames[-1] or any(w in frames[-1] for w in ("wait (threading", "select (", "poll (")):
            continue
        busy += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if "executor/" in frame or "executor." in frame:
                total[frame] += int(count)
    lines = [f"busy samples: {busy}", "", "self (top of stack):"]
    lines += [f"  {n:6d}  {frame}" for frame, n in own.most_common(limit)]
    lines += ["", "total, the executor's own functions:"]
    lines += [f"  {n:6d}  {frame}" for frame, n in total.most_common(limit)]
    return lines


def _first_line_ms(start: object, stamps: Path, tag: str) -> float:
    began = time.time()
    finish = start()  # type: ignore[operator]
    stamp = wait_for(lambda: read_stamp(stamps, f"{tag}.start"), 60, tag)
    finish()
    return (float(stamp["t"]) - began) * 1000


def spawn_phases(tmp: Path, count: int) -> list[str]:
    """p50 ms from the spawn call to the stand-in's first line: bare, sandbox, sandbox + cgroup."""
    standin = make_venv_root(tmp / "spawn-venvs") / "benchsim-bundled" / "bin" / "datahub"
    stamps = tmp / "spawn-stamps"
    stamps.mkdir()
    work = tmp / "spawn-work"
    samples: dict[str, list[float]] = {"bare Popen": [], "SandboxRun": [], "SandboxRun + cgroup": [],
                                       "spawn server": [], "spawn server + cgroup": []}
    server = SpawnServer()
    for index in range(count):
        for kind, values in samples.items():
            tag = f"{kind.replace(' ', '-').replace('+', 'c')}-{index}"
            recipe = {"source": {"config": {"stamps": str(stamps), "tag": tag}}}
            stdin = json.dumps({"__recipe_yaml__": json.dumps(recipe), "__secrets__": {}}).encode()
            argv = [str(standin), "ingest", "run", "-c", "-"]
            values.append(_first_line_ms(_starter(kind, argv, stdin, work, server), stamps, tag))
    server.close()
    if not detect_cgroups().active:
        samples.pop("SandboxRun + cgroup")
        samples.pop("spawn server + cgroup")
    return [f"  {statistics.median(v):6.1f} ms  {k}" for k, v in samples.items()]


def _starter(kind: str, argv: list[str], stdin: bytes, work: Path, server: SpawnServer) -> object:
    def start() -> object:
        if kind == "bare Popen":
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            proc.communicate(stdin)
            return proc.wait
        spec = SandboxSpec(
            argv=argv,
            stdin=stdin,
            work_root=work,
            env=build_env(os.environ, {}, {}, work),
            task_id="profile",
            use_cgroup=kind.endswith("cgroup"),
        )
        run = SandboxRun(spec, spawner=server if kind.startswith("spawn server") else None)
        run.start()
        return lambda: run.wait(60)

    return start


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of every thread of ``pid`` while on the CPU, 500 Hz, collapsed stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", str(pid), "--threads", "--rate", "500", "--format", "raw"]
    argv += ["--output", str(out), "--nonblocking"]
    record = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches asynchronously; a profile may miss its first second otherwise
    return record


def _stop(record: subprocess.Popen[bytes]) -> None:
    record.send_signal(signal.SIGINT)
    record.wait(60)


def output_profile(tmp: Path, line: int, size: int = 32 << 20) -> list[str]:
    """py-spy on this process while a ``SandboxRun`` reads a flood of ``line``-byte lines."""
    standin = make_venv_root(tmp / "flood-venvs") / "benchsim-bundled" / "bin" / "datahub"
    stamps = tmp / "flood-stamps"
    stamps.mkdir()
    config = {"stamps": str(stamps), "tag": "flood", "mode": "flood", "bytes": size, "line": line}
    stdin = json.dumps(
        {"__recipe_yaml__": json.dumps({"source": {"config": config}}), "__secrets__": {"S": SECRET_VALUE}}
    ).encode()
    work = tmp / "flood-work"
    spec = SandboxSpec(
        argv=[str(standin), "ingest", "run", "-c", "-"],
        stdin=stdin,
        work_root=work,
        env=build_env(os.environ, {}, {}, work),
        secrets=[SECRET_VALUE],
        task_id="flood",
        use_cgroup=False,
    )
    out = tmp / f"flood-{line}.txt"
    record = _spy(os.getpid(), out)
    run = SandboxRun(spec)
    run.start()
    run.wait(600)
    _stop(record)
    end = read_stamp(stamps, "flood.end")
    rate = size / (end["t"] - end["began"]) / 1e6 if end else 0.0
    return [f"{line} B lines: {rate:.1f} MB/s", *_top(out, 15)]


def main() -> int:
    """``python -m bench.profile [N]``: pickups; ``python -m bench.profile output LINE``: a flood."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if sys.argv[1:2] == ["output"]:
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
            print("\n".join(output_profile(Path(tmp), int(sys.argv[2]) if len(sys.argv) > 2 else 128)))
        return 0
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        world = World(Path(tmp), ("default",))
        try:
            child = world.executor([{"id": "default", "max_workers": 1}])
            source = world.source("default", {"mode": "trivial"})
            world.wait_result(world.submit(source)[0])
            out = Path(tmp) / "collapsed.txt"
            record = _spy(child.proc.pid, out)
            for _ in range(count):
                urn, _created = world.submit(source)
                wait_for(lambda u=urn: world.started(u), 60, "start")
                world.wait_result(urn)
            _stop(record)
            print("\n".join(_top(out, 25)))
            print("\nspawn -> first line (p50):")
            print("\n".join(spawn_phases(Path(tmp), max(5, count // 3))))
        finally:
            world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
