"""The warm spare's holder: beside a venv build, across a stop, at the drain; and the rest after.

A venv build runs a requested package's code (pip: an sdist's build backend) outside any
isolation, as the recipe's uid: the pool's spare is killed before pip starts and none is made
until that launch ends, whatever the isolation. The spawn server stops ``IDLE_S`` after its last
use even when its last child (a spare killed unused) is reaped after that: at the reap, not a
whole idle time later. A spare made across the pool's stop is killed once made; the drain
kills every pool's spare and waits for them together.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from executor.pool import warm
from executor.pool.sandboxing import SandboxLauncher
from executor.pool.warm import SPARE_ID, Spare, WarmSpare, close_all, spare_key
from executor.sandbox import SandboxRun, SandboxSpec
from executor.sandbox.spawner import SpawnServer
from executor.sandbox.venvs import ResolvedVenv

from .helpers import py, wait_until
from .launching import PREFIX, Outcome, SilentIndex, held_spare, request
from .test_warm_spare import DEADLINE_S, ask, gone, make_pool, run_task, spare_pid


def test_a_venv_build_kills_the_spare_before_pip_runs(
        tmp_path: Path, server: SpawnServer, silent_index: SilentIndex) -> None:
    pool = make_pool(tmp_path, server, dynamic=True)
    try:
        run_task(pool, "first", tmp_path / "first")
        pid = spare_pid(pool)
        launcher = SandboxLauncher(pool, PREFIX + "dynamic")
        outcome = Outcome()
        launcher.start(request("dynamic", tmp_path / "spawned", version="0.0.1", plugin="file"), {},
                       on_exit=outcome)
        try:
            wait_until(lambda: silent_index.connections > 0, 120, "pip to ask the index")
            assert gone(pid), "the spare was killed before pip started"
            assert pool.warm.ready is None and not pool.warm.making
        finally:
            launcher.kill()
        assert outcome.wait(DEADLINE_S) is not None
    finally:
        pool.warm.close()


def test_no_spare_lives_beside_a_build_in_any_isolation(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    """As under ``bwrap`` (``alone`` False: spares beside runs are fine), a build still kills the
    spare, and an offer made meanwhile waits for the build's launch to end."""
    holder = WarmSpare()
    make = functools.partial(held_spare, server, make_spec)

    try:
        holder.offer("plain", make)
        wait_until(lambda: holder.ready is not None, DEADLINE_S, "a spare")
        first = holder.ready
        assert first is not None
        holder.run_begins(alone=False, build=True)
        assert holder.ready is None and first.run.wait(DEADLINE_S) is not None, "killed at the build"
        holder.offer("plain", make)  # another task's input, as under bwrap
        assert holder.ready is None and not holder.making, "kept until the build's launch ends"
        holder.run_ended(build=True)
        wait_until(lambda: holder.ready is not None, DEADLINE_S, "the spare once the build ended")
    finally:
        holder.close()


def test_a_spare_is_not_idle_while_a_run_of_the_pool_is_in_progress(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    """As under ``bwrap`` (the spare beside a run): a task longer than the idle time keeps the
    spare for the task after it; the idle time counts from that run's end."""
    holder = WarmSpare(idle_s=0.3)
    make = functools.partial(held_spare, server, make_spec)

    try:
        holder.run_begins(alone=False)
        holder.offer("plain", make)  # the long task's input
        wait_until(lambda: holder.ready is not None, DEADLINE_S, "a spare")
        began = time.monotonic()
        wait_until(lambda: time.monotonic() - began > 1.0, 10, "three idle times of the long task")
        assert holder.ready is not None and holder.counts.discarded == 0, "kept while the task runs"
        holder.run_ended()
        wait_until(lambda: holder.ready is None, DEADLINE_S, "the idle time after the run's end")
        assert holder.counts.discarded == 1
    finally:
        holder.close()


def test_the_server_stops_at_the_reap_of_a_spare_outliving_its_idle_time(
        make_spec: Callable[..., SandboxSpec]) -> None:
    """The server's idle time counts from the spare's spawn (its unused end is no use); past it,
    with the spare still alive, the keeper waits for that reap (no clock), and stops at it."""
    server = SpawnServer(idle_s=1.0)
    try:
        spare = SandboxRun(make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id=SPARE_ID),
                           spawner=server)
        spare.start(here=True)
        wait_until(lambda: server._reap_wakes, 30, "the keeper to wait for the last child's reap")
        with server._state:  # a keeper on a clock would now wait a minute; the reap must wake it
            server._idle_s, server._last_used = 60.0, server._last_used - 61.0
        spare.stop("no task came", grace_s=0, status="CANCELLED")
        assert spare.wait(DEADLINE_S) is not None
        wait_until(lambda: server.pid is None, 30, "the server to stop at the spare's reap")
    finally:
        server.close()
    assert not psutil.Process().children(recursive=True)


def test_a_spare_made_across_the_pools_stop_is_killed_not_kept(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    holder = WarmSpare()
    go, made = threading.Event(), threading.Event()
    runs: list[SandboxRun] = []

    def make() -> Spare:
        assert go.wait(DEADLINE_S)
        spec = make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id=SPARE_ID)
        runs.append(SandboxRun(spec, spawner=server))
        runs[0].start(here=True)
        made.set()
        return Spare(runs[0], ResolvedVenv("bundled", Path("/nonexistent"), Path("/nonexistent/datahub")),
                     spare_key(spec))

    holder.offer("plain", make)
    holder.offer("plain", make)  # one is being made: no second
    holder.clear(wait_s=0)  # the pool stops meanwhile
    go.set()
    assert made.wait(DEADLINE_S) and len(runs) == 1
    result = runs[0].wait(DEADLINE_S)
    assert result is not None and result.outcome == "stopped", "killed once made"
    assert holder.ready is None and holder.counts.made == 0 and holder.counts.discarded == 1
    assert holder.wait_made(DEADLINE_S) and not holder.making, "reaped before the making ends"


def test_the_drain_kills_every_pools_spare_and_waits_for_them_together(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    holders = [WarmSpare(), WarmSpare()]
    make = functools.partial(held_spare, server, make_spec)

    for holder in holders:
        holder.offer("plain", make)
    wait_until(lambda: all(h.ready is not None for h in holders), DEADLINE_S, "a spare in each pool")
    runs = [h.ready.run for h in holders if h.ready is not None]
    close_all(holders, wait_s=DEADLINE_S)
    assert all(run.wait(0) is not None for run in runs), "both killed and cleaned up on return"
    assert all(h.ready is None and h.counts.discarded == 1 for h in holders)


def test_an_offer_while_a_doomed_spare_is_made_is_kept_until_that_ends(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    """A run spawned beside a spare being made dooms it (killed once made); a task's offer in that
    time is kept and made once the doomed one is gone, not dropped (the next task would spawn)."""
    holder = WarmSpare()
    go = threading.Event()
    venv = ResolvedVenv("bundled", Path("/nonexistent"), Path("/nonexistent/datahub"))

    def make(gated: bool) -> Spare:
        assert not gated or go.wait(DEADLINE_S)
        spec = make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id=SPARE_ID)
        run = SandboxRun(spec, spawner=server)
        run.start(here=True)
        return Spare(run, venv, spare_key(spec), "plain")

    try:
        holder.offer("plain", lambda: make(True))
        holder.run_begins(alone=True)  # a task spawns its own run meanwhile: the spare is doomed
        holder.run_ended(alone=True)
        holder.offer("plain", lambda: make(False))  # that task's input... after its end
        go.set()
        wait_until(lambda: holder.ready is not None, DEADLINE_S, "the kept offer's spare")
        assert holder.counts.made == 1 and holder.counts.discarded == 1
    finally:
        holder.close()


def test_a_failure_of_the_spares_bookkeeping_at_the_runs_end_does_not_lose_its_outcome(
        tmp_path: Path, server: SpawnServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Process isolation: the run's offer is kept until it ends, and its end makes the spare; no
    thread to be had for that (``can't start new thread``), or any failure of the holder's
    bookkeeping there, must not keep the outcome from the Task, which would wait for ever
    holding its slot and its message."""
    pool = make_pool(tmp_path, server)
    launcher = SandboxLauncher(pool, PREFIX + "long")
    outcome = Outcome()
    launcher.prestart(ask("long", tmp_path / "long", until=tmp_path / "release"), on_exit=outcome)
    try:
        launcher.give_secrets({})  # the offer, kept until this run ends
        wait_until(lambda: (tmp_path / "long").exists(), DEADLINE_S, "the task's recipe to run")

        def no_thread(*_args: object) -> None:
            raise RuntimeError("can't start new thread")

        counted = pool.warm.run_ended

        def run_ended(build: bool = False, alone: bool = False) -> None:
            counted(build=build, alone=alone)  # the counts stay right for the tests after
            no_thread()

        monkeypatch.setattr(warm.SPARES, "start", no_thread)
        monkeypatch.setattr(pool.warm, "run_ended", run_ended)
        (tmp_path / "release").touch()
        assert outcome.wait(DEADLINE_S).exit_code == 0
        assert pool.warm.ready is None and not pool.warm.making
    finally:
        launcher.kill()
        pool.warm.close()


def test_a_task_waits_for_the_spare_being_made_and_adopts_it(
        server: SpawnServer, make_spec: Callable[..., SandboxSpec]) -> None:
    """Back to back, the next task asks while the spare the previous one's end offered is still
    being made: it waits for it (bounded) and adopts it, where it spawned its own and doomed
    that spare (a third of a 1-worker batch's spares were discarded so)."""
    holder = WarmSpare()
    go = threading.Event()

    def make() -> Spare:
        assert go.wait(DEADLINE_S)
        return held_spare(server, make_spec)

    def go_once_waited_for() -> None:
        waiters = holder._made._waiters  # type: ignore[attr-defined]  # CPython's Condition
        wait_until(lambda: bool(waiters), DEADLINE_S, "a task waiting for the spare being made")
        go.set()

    key = spare_key(make_spec(py("import sys; sys.stdin.read()"), hold_input=True, task_id="task-1"))
    holder.offer("plain", make)
    releaser = threading.Thread(target=go_once_waited_for, name="test-releaser", daemon=True)
    releaser.start()
    try:
        spare = holder.take(key)
        assert spare is not None and holder.counts.discarded == 0, "the spare being made, adopted"
        spare.run.stop("test over", grace_s=0)
        assert spare.run.wait(DEADLINE_S) is not None
    finally:
        go.set()
        releaser.join(DEADLINE_S)
        holder.close()
