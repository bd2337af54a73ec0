"""The bench's bare sandbox does what it prices: a scrubbed environment in a private work dir,
the output masked into a kept task log, the work dir and the task cgroup gone afterwards, and
a limit enforced. A floor that skipped a guarantee would make the executor look slow for
doing it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import sandbox_floor
from bench.sandbox_floor import BareSandbox
from executor.sandbox.cgroups import CgroupSupport
from executor.sandbox.masking import MASK
from executor.sandbox.pacing import FAR_INTERVAL_S

SECRET = "floor-test-secret-42"
CHILD = """
import json, os, sys
data = json.loads(sys.stdin.read())
print("secret is", data["s"], flush=True)
print(json.dumps({"cwd": os.getcwd(), "env": sorted(os.environ), "home": os.environ["HOME"],
                  "cgroup": open("/proc/self/cgroup").read()}), flush=True)
"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[BareSandbox]:
    sandbox = BareSandbox(tmp_path)
    yield sandbox
    sandbox.close()  # its spawn server and the server's keeper thread


def _run(box: BareSandbox, key: str, code: str, stdin: dict[str, str]) -> tuple[int, bytes, str]:
    run = box.start(key, [sys.executable, "-c", code])
    work = str(run.work)
    run.feed(json.dumps(stdin).encode())
    status, output = run.drain([SECRET])
    return status, output, work


def test_a_run_is_masked_logged_and_cleaned_up(box: BareSandbox, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", "floor-test-token")
    status, output, work = _run(box, "task-1", CHILD, {"s": SECRET})
    assert status == 0
    assert SECRET.encode() not in output and f"secret is {MASK}".encode() in output
    seen = json.loads(output.splitlines()[1])
    assert seen["cwd"] == work == seen["home"]
    assert "DATAHUB_GMS_TOKEN" not in seen["env"]
    assert not os.path.exists(work)
    log = (tmp_path / "logs" / "task-1.log").read_bytes()
    assert log == output
    if box.support.active:  # it ran in its own cgroup, which is gone now
        lines = seen["cgroup"].splitlines()
        assert "task-1" in next(line for line in lines if ":memory:" in line or line.startswith("0::"))
        parents = [d for d in (box.support.memory_parent, box.support.pids_parent) if d is not None]
        assert not any(p.name.startswith("task-1") for d in parents if d.exists() for p in d.iterdir())


@pytest.mark.parametrize("cgroup", [True, False])
def test_a_run_longer_than_the_interval_is_sampled(box: BareSandbox, cgroup: bool) -> None:
    if not cgroup:  # a host without task cgroups: the tree is walked as the executor's monitor does
        box.support = CgroupSupport("none", reason="test")
    enforced = box.support.memory_parent is not None and box.support.pids_parent is not None
    interval = FAR_INTERVAL_S if enforced else sandbox_floor.LIMITS.sample_interval_s
    seconds = 1.5 * interval  # the run's length (the executor's pacing), not a wait of the test
    assert _run(box, "slow", f"import time; time.sleep({seconds})", {})[0] == 0
    assert box.peak_processes == 1 and box.peak_memory > 0


LEAVES_ONE_BEHIND = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


@pytest.mark.parametrize("cgroup", [True, False])
def test_a_process_left_behind_is_found_after_the_exit_and_killed(box: BareSandbox, cgroup: bool) -> None:
    if not cgroup:  # found in the run's session once its main process has gone
        box.support = CgroupSupport("none", reason="test")
    run = box.start("leaves", [sys.executable, "-c", LEAVES_ONE_BEHIND])
    run.feed(b"")
    assert run.drain([SECRET])[0] == 0
    assert run.breach == "leftover processes"


def test_the_cgroup_parent_is_the_floors_own_and_kept_until_it_closes(tmp_path: Path) -> None:
    box = BareSandbox(tmp_path)
    try:
        if not box.support.active:
            pytest.skip("no task cgroups on this host")
        parent = box.support.memory_parent or box.support.pids_parent
        assert parent is not None and parent.name == f"bench-floor-{os.getpid()}"
        assert _run(box, "kept", "print('hi')", {})[0] == 0
        assert parent.is_dir()  # not removed with the task's cgroup
    finally:
        box.close()
    assert not parent.exists()


def test_logs_beyond_the_retention_go(box: BareSandbox, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_floor, "KEEP_LOGS", 2)
    for index in range(3):
        assert _run(box, f"task-{index}", "print('hi')", {})[0] == 0
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["task-1.log", "task-2.log"]


def test_the_output_limit_kills_the_tree(box: BareSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_floor, "LIMITS", sandbox_floor.LIMITS.__class__(output_bytes=1 << 16))
    run = box.start("flood", [sys.executable, "-c", "import sys\nwhile True: sys.stdout.write('x' * 4096)"])
    run.feed(b"")
    status, _output = run.drain([SECRET])
    assert status < 0 and run.breach.startswith("output")
