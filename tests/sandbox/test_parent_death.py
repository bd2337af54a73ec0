"""When the executor is SIGKILLed, its recipe dies with it; what the recipe forked is reaped later.

An intermediate Python process plays the executor: it starts a sandbox whose child forks a
grandchild and sleeps. The test SIGKILLs the intermediate, then checks that the child dies
at once (parent-death signal), and that ``reap_orphans`` kills the grandchild (which has
no parent-death signal of its own) and removes the dead executor's cgroup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.sandbox import reap_orphans
from executor.sandbox.cgroups import detect_cgroups

from .helpers import gone, marked_processes, wait_until

REPO = Path(__file__).resolve().parents[2]

FAKE_EXECUTOR = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from executor.sandbox import SandboxRun, SandboxSpec
    child = (
        "import os, time\\n"
        "if os.fork() == 0:\\n"
        "    time.sleep(30)\\n"          # the grandchild; hard stop
        "    os._exit(0)\\n"
        "print('child ready', flush=True)\\n"
        "time.sleep(30)\\n"              # hard stop
    )
    run = SandboxRun(SandboxSpec(argv=[sys.executable, "-c", child], work_root=Path(sys.argv[1]),
                                 env={"PATH": os.environ["PATH"]}, use_cgroup=sys.argv[2] == "1"),
                     on_line=lambda line: print(line, flush=True))
    run.start()
    print("child", run.pid, run.work_dir.name, flush=True)
    time.sleep(30)                         # hard stop
""")


@pytest.fixture
def fake_executor(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_EXECUTOR, str(tmp_path / "work"), request.param],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    yield proc
    proc.kill()
    proc.wait(10)
    assert proc.stdout is not None
    proc.stdout.close()


def read_until(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:  # the child prints within a second; the fake executor exits in 30 s at most
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"fake executor ended before printing {prefix!r}")


@pytest.mark.alone  # the reap_orphans here must find the orphan: no executor may start meanwhile
@pytest.mark.parametrize("fake_executor", [
    pytest.param("1", id="cgroup",
                 marks=pytest.mark.skipif(not detect_cgroups().active, reason="no writable cgroup here")),
    pytest.param("0", id="psutil-only"),
], indirect=True)
def test_recipe_dies_with_its_executor_and_orphans_are_reaped(fake_executor: subprocess.Popen[str]) -> None:
    _, pid, run_name = read_until(fake_executor, "child ").split()
    read_until(fake_executor, "child ready")
    child = int(pid)
    assert len(marked_processes(run_name)) == 2, "child and grandchild run"

    os.kill(fake_executor.pid, signal.SIGKILL)
    wait_until(lambda: gone(child), 5, "the recipe to die with its executor")

    leftover = marked_processes(run_name)
    assert len(leftover) == 1, "the grandchild has no parent-death signal of its own"
    assert reap_orphans() >= 1
    wait_until(lambda: not marked_processes(run_name), 5, "the orphan to be reaped")
    support = detect_cgroups()
    for parent in (support.memory_parent, support.pids_parent):
        if parent is not None and parent.exists():
            assert not [d for d in parent.iterdir() if f"-p{fake_executor.pid}-" in d.name]
