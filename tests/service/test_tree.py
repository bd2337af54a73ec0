"""The executor's tree as DESIGN.md draws it: every child alive and supervised, then gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pykka
import pytest

from executor import service as service_module
from executor.config import load_config
from executor.observability import HealthState, Metrics
from executor.pool import warm
from executor.pool.messages import LEASER, POLLER, REPORTER, RESOLVER, RUNNER
from executor.pool.warm import WarmSpare
from executor.service import Service

from ..supervision.probe import wait_for
from .processes import closed_port


def service_env(state_dir: Path) -> dict[str, str]:
    """An executor's environment whose GMS is a closed port (nothing is reached)."""
    return {
        "DATAHUB_GMS_URL": f"http://127.0.0.1:{closed_port()}",
        "DATAHUB_GMS_TOKEN": "t0ken-value",
        "REMOTE_EXECUTOR_STATE_DIR": str(state_dir),
        "REMOTE_EXECUTOR_OBSERVABILITY_PORT": "0",
    }


def test_tree_has_every_child_alive_and_stops_without_leftovers(tmp_path: Path) -> None:
    before = set(threading.enumerate())  # the Thread objects: an ident is reused once its thread ends
    env = service_env(tmp_path)
    config = load_config(None, env).model_copy(
        update={"pools": (load_config(None, {**env, "DATAHUB_EXECUTOR_POOL_ID": "a"}).pools[0],
                          load_config(None, {**env, "DATAHUB_EXECUTOR_POOL_ID": "b"}).pools[0])}
    )
    service = Service(config, "t0ken-value", HealthState(), Metrics())
    service.start()
    try:
        assert service.root is not None
        directory = service.root.proxy().children_directory.get(timeout=5)
        assert directory.names() == ["observability", "pool:a", "pool:b"]
        assert all(directory.get(name) is not None for name in directory.names())  # alive
        for pool in ("pool:a", "pool:b"):
            children = directory.get(pool).proxy().children_directory.get(timeout=5)
            assert children.names() == [LEASER, RESOLVER, REPORTER, RUNNER, POLLER]
            assert all(children.get(name) is not None for name in children.names())
        assert_threads_shared(before)
    finally:
        service.shutdown()
    assert pykka.ActorRegistry.get_all() == []
    wait_for(lambda: {t for t in threading.enumerate() if t.is_alive()} <= before,
             timeout=30, what="every thread of the tree to end")


def assert_threads_shared(before: set[threading.Thread]) -> None:
    """The quiet actors share threads (docs/design.md): the root and the Observer the control
    strand, the pools' reporters one strand, each pool's supervisor, leaser, resolver and runner
    the pool's strand; the poller has its own. No thread is left for any one quiet actor."""
    expected = {"control", "reporters", "root/pool:a/strand", "root/pool:a/poller", "root/pool:b/strand",
                "root/pool:b/poller"}

    def started() -> set[str]:
        return {t.name for t in threading.enumerate() if t not in before and t.is_alive()}

    # A CI run once missed the last poller's thread when ``before`` held idents: a previous
    # test's thread, alive at the snapshot, ended, and glibc gave its stack (so its ident) to the
    # next thread made. Thread objects are never reused; the wait is a deadline, not a sleep.
    wait_for(lambda: expected <= started(), timeout=10, what="the strands' and pollers' threads")
    new = started()
    quiet = ("root", "root/observability", "root/pool:a", "root/pool:b")
    quiet += tuple(f"root/pool:{p}/{name}" for p in "ab" for name in (LEASER, RESOLVER, REPORTER, RUNNER))
    assert not new & set(quiet)
    assert len(new) <= 5 + 2 * 2, new  # control, reporters, health-http, timers, spawn-server


def test_start_removes_the_work_dirs_an_earlier_executor_left(tmp_path: Path) -> None:
    """An executor killed during a run leaves its work dir: the next start removes it before
    any pool runs (names starting with a dot, such as a venv cache, are not work dirs)."""
    before = set(threading.enumerate())  # the Thread objects: an ident is reused once its thread ends
    env = service_env(tmp_path)
    service = Service(load_config(None, env), "t0ken-value", HealthState(), Metrics())
    work = service.pools[0].state_dir / "work"
    left, cache = work / "left-by-a-killed-run", work / ".cache"
    (left / "tmp").mkdir(parents=True)
    (left / "recipe-output").write_text("x")
    cache.mkdir()
    service.start()
    try:
        assert not left.exists() and cache.is_dir()
    finally:
        service.shutdown()
    wait_for(lambda: {t for t in threading.enumerate() if t.is_alive()} <= before,
             timeout=30, what="every thread of the tree to end")


def test_the_drain_stops_admission_before_it_waits_for_the_spares(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the spares may wait (up to 5 s for one being made): during that wait no poller may
    still take, nor a runner admit, a task. So by the time the spares are closed, every pool's
    runner has been told to drain (its admission is closed)."""
    before = set(threading.enumerate())
    service = Service(load_config(None, service_env(tmp_path)), "t0ken-value", HealthState(), Metrics())
    seen: list[bool] = []

    def close_after_admission(holders: Iterable[WarmSpare], wait_s: float = warm.KILL_WAIT_S) -> None:
        seen.append(wait_until_true(lambda: all(not p.tasks.admitting for p in service.pools), 30))
        warm.close_all(holders, wait_s)

    monkeypatch.setattr(service_module, "close_all", close_after_admission)
    service.start()
    try:
        assert all(pool.tasks.admitting for pool in service.pools)
    finally:
        service.shutdown()
    assert seen == [True], "admission was still open while the spares were closed"
    wait_for(lambda: {t for t in threading.enumerate() if t.is_alive()} <= before,
             timeout=30, what="every thread of the tree to end")


def wait_until_true(check: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``check`` holds within ``timeout_s`` (polled; no fixed sleep decides)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
