"""Each limit ends a real process tree with a result naming the limit and the measured value.

The child programs are small Python scripts with their own hard stop, so that none can run
away even if the sandbox failed. The ``run_sandbox`` fixture checks that no process of a
run is left afterwards. Where this host lets us create cgroups, memory and process limits
run both with the cgroup and with the psutil monitor alone.
"""

from __future__ import annotations

import psutil
import pytest

from executor.sandbox import SandboxLimits
from executor.sandbox.cgroups import detect_cgroups
from executor.sandbox.limits import MiB

from .conftest import RunFactory
from .helpers import py

CGROUPS = detect_cgroups().active
WITH_AND_WITHOUT_CGROUP = pytest.mark.parametrize("use_cgroup", [
    pytest.param(True, id="cgroup", marks=pytest.mark.skipif(not CGROUPS, reason="no writable cgroup here")),
    pytest.param(False, id="psutil-only"),
])

GROW_MEMORY = """
    import time
    hold, stop = [], time.monotonic() + 20
    while time.monotonic() < stop and len(hold) < 60:   # hard stop: 600 MiB, 20 s
        hold.append(b"\\x01" * (10 * 2**20))
        time.sleep(0.01)
    time.sleep(max(0, stop - time.monotonic()))
"""

FORK_BOMB = """
    import os, time
    stop, children = time.monotonic() + 10, 0
    while time.monotonic() < stop and children < 200:   # hard stop: 200 children, 10 s
        try:
            pid = os.fork()
        except OSError:
            time.sleep(0.005)
            continue
        if pid == 0:
            time.sleep(max(0, stop - time.monotonic()))
            os._exit(0)
        children += 1
    time.sleep(max(0, stop - time.monotonic()))
"""


def limits(**values: object) -> SandboxLimits:
    values.setdefault("kill_grace_s", 2.0)
    values.setdefault("sample_interval_s", 0.05)
    return SandboxLimits(**values)  # type: ignore[arg-type]


@WITH_AND_WITHOUT_CGROUP
def test_memory_limit_kills_the_tree_and_names_the_measured_value(run_sandbox: RunFactory,
                                                                  use_cgroup: bool) -> None:
    _, result = run_sandbox(py(GROW_MEMORY), limits=limits(memory_bytes=100 * MiB), use_cgroup=use_cgroup)
    assert result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "memory"
    assert result.breach.measured >= 100 * MiB and result.breach.allowed == 100 * MiB
    assert result.breach.message.startswith("memory ") and "limit 100 MiB" in result.breach.message
    assert result.suggested_status == "FAILURE"
    assert result.breach.message in result.log_text


@WITH_AND_WITHOUT_CGROUP
def test_fork_bomb_is_contained(run_sandbox: RunFactory, use_cgroup: bool) -> None:
    _, result = run_sandbox(py(FORK_BOMB), limits=limits(max_processes=20), use_cgroup=use_cgroup)
    assert result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "processes" and result.breach.measured >= 20
    if use_cgroup:
        assert result.max_processes <= 20, "pids.max lets no fork past the limit"


def test_cpu_limit(run_sandbox: RunFactory) -> None:
    spin = "import time\nstop = time.monotonic() + 20\nwhile time.monotonic() < stop: pass"
    _, result = run_sandbox(py(spin), limits=limits(cpu_seconds=0.5))
    assert result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "cpu" and result.breach.measured > 0.5
    assert result.cpu_seconds > 0.5
    assert result.breach.message.startswith("cpu ")


def test_wall_time_limit_is_a_timeout(run_sandbox: RunFactory) -> None:
    _, result = run_sandbox(py("import time; time.sleep(20)"), limits=limits(wall_seconds=0.5))
    assert result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "wall_time" and result.breach.measured > 0.5
    assert result.suggested_status == "TIMEOUT"


def test_output_limit(run_sandbox: RunFactory) -> None:
    flood = "import sys\nfor _ in range(200): sys.stdout.write('y' * 99999 + '\\n')"  # hard stop: 20 MB
    _, result = run_sandbox(py(flood), limits=limits(output_bytes=MiB))
    assert result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "output" and result.breach.measured > MiB


def test_disk_limit_counts_the_work_dir(run_sandbox: RunFactory) -> None:
    fill = """
        import os, time
        for i in range(8):                      # hard stop: 4 MiB, 20 s
            with open(f"blob-{i}", "wb") as f:
                f.write(os.urandom(512 * 1024))
        time.sleep(20)
    """
    _, result = run_sandbox(py(fill), limits=limits(disk_bytes=MiB))
    assert result.outcome == "limit" and result.breach is not None
    assert result.breach.limit == "disk" and result.breach.measured > MiB


def test_a_gigabyte_of_output_keeps_the_executor_memory_bounded(run_sandbox: RunFactory) -> None:
    flood = """
        import sys
        block = (b"z" * 1023 + b"\\n") * 1024
        for _ in range(1024):                   # exactly 1 GiB, then exit
            sys.stdout.buffer.write(block)
    """
    me = psutil.Process()
    before = me.memory_info().rss
    _, result = run_sandbox(py(flood), limits=limits())
    growth = me.memory_info().rss - before
    assert result.outcome == "exited" and result.exit_code == 0
    assert result.output_bytes == 1024 * MiB
    assert growth < 64 * MiB, f"executor RSS grew by {growth / MiB:.0f} MiB"
    assert len(result.log_text) < 16 * MiB
    assert "line(s) truncated" in result.log_text


def test_a_huge_line_without_newline_is_capped(run_sandbox: RunFactory) -> None:
    one_line = "import sys\nsys.stdout.write('q' * (50 * 2**20))"
    _, result = run_sandbox(py(one_line), limits=limits())
    assert result.outcome == "exited"
    (line,) = [line for line in result.log_text.splitlines() if line.startswith("q")]
    assert line.endswith("[...truncated]") and len(line) <= 4096 + len(" [...truncated]")


@WITH_AND_WITHOUT_CGROUP
def test_leftover_processes_are_stopped_when_the_main_process_exits(run_sandbox: RunFactory,
                                                                    use_cgroup: bool) -> None:
    daemonize = """
        import os, time
        if os.fork() == 0:
            os.setsid()                         # leave the session: only the monitor's memory finds it
            if os.fork() == 0:
                time.sleep(20)                  # hard stop
                os._exit(0)
            os._exit(0)
        time.sleep(0.3)
        print("main done", flush=True)
    """
    _, result = run_sandbox(py(daemonize), limits=limits(), use_cgroup=use_cgroup)
    assert result.outcome == "exited" and result.exit_code == 0
    assert "leftover process" in result.log_text
