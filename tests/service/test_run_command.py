"""``remote-executor run`` as a process: stays up against an unreachable GMS, stops on SIGTERM."""

from __future__ import annotations

import ctypes
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import ExecutorProcess, closed_port


@pytest.fixture
def executor_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATAHUB_GMS_URL": f"http://127.0.0.1:{closed_port()}",
        "DATAHUB_GMS_TOKEN": "token-that-must-not-be-logged",
        "DATAHUB_EXECUTOR_POOL_ID": "default",
        "REMOTE_EXECUTOR_STATE_DIR": str(tmp_path / "state"),
        "REMOTE_EXECUTOR_OBSERVABILITY_PORT": "0",
    }


@pytest.fixture
def started(executor_env: dict[str, str]) -> Iterator[ExecutorProcess]:
    process = ExecutorProcess(["run"], executor_env)
    yield process
    process.kill()


def retry_delay(record: dict[str, object]) -> float | None:
    match = re.search(r"retrying in ([0-9.]+)s", str(record.get("msg", "")))
    return float(match.group(1)) if match and "listExecutorConfigs" in str(record.get("msg")) else None


def test_unreachable_gms_keeps_retrying_with_backoff_and_sigterm_exits_0(started: ExecutorProcess) -> None:
    delays = [retry_delay(started.wait_for_log(lambda r: retry_delay(r) is not None)) for _ in range(3)]
    assert delays == sorted(delays) and delays[-1] > delays[0]  # backing off, not hammering
    assert started.proc.poll() is None  # still up
    assert started.terminate(timeout=30) == 0
    output = "".join(started.raw)
    assert "token-that-must-not-be-logged" not in output
    assert all(r.get("pool") for r in started.lines if r.get("level") != "RAW")


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH") or os.sched_getscheduler(0) != os.SCHED_OTHER,
                    reason="the executor switches only from SCHED_OTHER")
def test_every_thread_of_the_executor_runs_under_sched_batch(started: ExecutorProcess) -> None:
    """``executor.scheduling``: switched at start-up, before the tree's threads, which inherit it."""
    started.wait_for_log(lambda r: retry_delay(r) is not None)  # the tree is up and retrying
    tids = os.listdir(f"/proc/{started.proc.pid}/task")
    assert len(tids) > 3
    assert {os.sched_getscheduler(int(tid)) for tid in tids} == {os.SCHED_BATCH}
    assert started.terminate(timeout=30) == 0


def test_second_signal_stops_at_once(started: ExecutorProcess) -> None:
    started.wait_for_log(lambda r: retry_delay(r) is not None)
    started.proc.send_signal(signal.SIGINT)
    started.proc.send_signal(signal.SIGINT)
    assert started.wait(timeout=30) in (0, 130)


def test_a_stop_signal_that_reaches_another_thread_stops_at_once(started: ExecutorProcess) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads, and CPython runs the
    handler on the main thread only, when that thread next runs: asleep in a lock's wait, it
    heard of it up to ``MAIN_WAIT_S`` (60 s) later. A busy host made the double-SIGINT test
    above fail so. Here the signal goes to one named thread (``tgkill``) other than the main."""
    started.wait_for_log(lambda r: retry_delay(r) is not None)  # the tree is up and retrying
    pid = started.proc.pid
    others = [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(pid, others[0], signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
    assert started.wait(timeout=30) == 0  # well under MAIN_WAIT_S
    assert any("received SIGTERM" in str(r.get("msg")) for r in started.lines)


def test_invalid_config_exits_2_naming_the_field(tmp_path: Path, executor_env: dict[str, str]) -> None:
    env = {**executor_env, "DATAHUB_EXECUTOR_INGESTION_MAX_WORKERS": "lots"}
    process = ExecutorProcess(["run"], env)
    assert process.wait(timeout=30) == 2
    assert "pools[0].max_workers" in "".join(process.raw)
