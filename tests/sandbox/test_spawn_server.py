"""The spawn server forks recipes with the exec wrapper's guarantees, and fails over to the wrapper.

Each test runs a real server (``launch.py --serve``) and real child processes: the recipe must
be this process's own child (so its exit status and parent-death signal are as after a
``Popen``), hold nothing but its three stdio descriptors (never the server's socket), get the
wrapper's rlimits, umask and signal dispositions, and die with its executor. The server's own
death must not touch a running recipe; a server that cannot work leaves the wrapper to start
recipes; ``close`` leaves no process or thread behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from executor.pool.sandboxing import SandboxLauncher
from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec, build_env, spawner
from executor.sandbox.cgroups import detect_cgroups
from executor.sandbox.spawner import ServerPopen, SpawnLost, SpawnServer, SpawnUnavailable

from .helpers import gone, marked_processes, py, wait_until
from .launching import Outcome, pool_context, request, stubborn_cli_root

REPO = Path(__file__).resolve().parents[2]

PROBE = """
    import json, os, signal, sys
    limits = {line[:26].strip(): line[26:].split()[0] for line in open("/proc/self/limits")}
    open_fds = []
    for fd in range(256):
        try:
            os.fstat(fd)
            open_fds.append(fd)
        except OSError:
            pass
    print("PROBE " + json.dumps({
        "ppid": os.getppid(), "sid": os.getsid(0) == os.getpid(), "fds": open_fds,
        "stdin": sys.stdin.read(), "umask": os.umask(0), "nofile": limits["Max open files"],
        "core": limits["Max core file size"],
        "cgroup": open("/proc/self/cgroup").read(), "cwd": os.getcwd(),
    }), flush=True)
"""


@pytest.fixture
def server() -> Iterator[SpawnServer]:
    spawner = SpawnServer()
    yield spawner
    spawner.close()
    assert not [t for t in threading.enumerate() if t.name == "spawn-server"]
    assert not psutil.Process().children(recursive=True), "close leaves no process behind"


def _run(server: SpawnServer, work_root: Path, argv: list[str], stdin: bytes = b"",
         use_cgroup: bool = False) -> tuple[SandboxRun, dict[str, object]]:
    spec = SandboxSpec(argv=argv, stdin=stdin, work_root=work_root,
                       env=build_env(os.environ, {}, {}, work_root), use_cgroup=use_cgroup,
                       limits=SandboxLimits(kill_grace_s=2.0, sample_interval_s=0.05),
                       task_id="spawn-test")
    run = SandboxRun(spec, spawner=server)
    run.start()
    result = run.wait(60)
    assert result is not None, "the run did not finish within 60 s"
    probe = next((line for line in result.log_text.splitlines() if line.startswith("PROBE ")), None)
    return run, {"result": result, **(json.loads(probe[len("PROBE "):]) if probe else {})}


def test_a_recipe_is_this_process_child_with_the_wrappers_set_up(server: SpawnServer,
                                                                  work_root: Path) -> None:
    _, first = _run(server, work_root, py(PROBE), stdin=b"the recipe on stdin")
    server_pid = server.pid
    _, second = _run(server, work_root, py(PROBE), stdin=b"again")
    for probe in (first, second):
        assert probe["result"].exit_code == 0, probe["result"]  # type: ignore[attr-defined]
        assert probe["ppid"] == os.getpid(), "CLONE_PARENT: the executor is the parent, not the server"
        assert probe["sid"] is True and probe["fds"] == [0, 1, 2], probe
        assert probe["umask"] == 0o077 and probe["nofile"] == "1024" and probe["core"] == "0"
        assert str(probe["cwd"]).startswith(str(work_root))
    assert first["stdin"] == "the recipe on stdin" and second["stdin"] == "again"
    assert server_pid is not None and server.pid == server_pid, "one server for both spawns"
    _, shell = _run(server, work_root, ["sh", "-c", "grep SigIgn /proc/self/status"])
    ignored = int(shell["result"].log_text.split()[1], 16)  # type: ignore[attr-defined]
    assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)), "Python's ignores undone"


@pytest.mark.skipif(not detect_cgroups().active, reason="no writable cgroup here")
def test_the_recipe_starts_inside_its_task_cgroup(server: SpawnServer, work_root: Path) -> None:
    _, probe = _run(server, work_root, py(PROBE), use_cgroup=True)
    assert probe["result"].exit_code == 0  # type: ignore[attr-defined]
    assert "/remote-executor/spawn-test-p" in str(probe["cgroup"]), probe["cgroup"]


def test_exit_codes_and_signals_come_back_as_after_popen(server: SpawnServer, work_root: Path) -> None:
    _, exited = _run(server, work_root, py("import sys; sys.exit(3)"))
    assert exited["result"].exit_code == 3  # type: ignore[attr-defined]
    _, killed = _run(server, work_root, py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert killed["result"].signal == signal.SIGKILL  # type: ignore[attr-defined]


def _popen(server: SpawnServer, options: list[str], argv: list[str], cwd: Path) -> ServerPopen:
    return ServerPopen(server, options, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, cwd=cwd, env={"PATH": os.environ["PATH"]}, bufsize=0)


def test_a_failed_set_up_step_is_told_on_the_output_and_exits_126(server: SpawnServer,
                                                                   tmp_path: Path) -> None:
    proc = _popen(server, ["--cgroup", str(tmp_path / "no-such-cgroup")], ["true"], tmp_path)
    out, _ = proc.communicate(timeout=30)
    server.reaped()
    assert proc.returncode == 126
    assert out.decode().startswith("remote-executor sandbox: cannot join cgroup"), out
    proc = _popen(server, [], ["no-such-program-anywhere"], tmp_path)
    out, _ = proc.communicate(timeout=30)
    server.reaped()
    assert proc.returncode == 127 and b"program not found" in out


def test_a_bad_request_is_refused_alone_and_the_server_goes_on(server: SpawnServer, tmp_path: Path) -> None:
    with pytest.raises(SpawnUnavailable, match="unknown option --bogus"):
        _popen(server, ["--bogus", "1"], ["true"], tmp_path)
    proc = _popen(server, [], [sys.executable, "-c", "print('fine')"], tmp_path)
    out, _ = proc.communicate(timeout=30)
    server.reaped()
    assert proc.returncode == 0 and out == b"fine\n"


def test_the_servers_death_leaves_a_running_recipe_alone_and_a_new_one_starts(
        server: SpawnServer, work_root: Path) -> None:
    spec = SandboxSpec(argv=py("import sys, time; print('up', flush=True); time.sleep(1.5); sys.exit(7)"),
                       work_root=work_root, env=build_env(os.environ, {}, {}, work_root),
                       use_cgroup=False, task_id="spawn-test")
    run = SandboxRun(spec, spawner=server)
    run.start()
    wait_until(lambda: "up" in run.log_tail(), 30, "the recipe to start")
    first = server.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    result = run.wait(60)
    assert result is not None and result.exit_code == 7, result
    _, probe = _run(server, work_root, py(PROBE))
    assert probe["ppid"] == os.getpid() and server.pid not in (None, first)


def test_a_server_that_takes_a_request_and_never_answers_fails_the_spawn_in_time(
        work_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer's wait is bounded (by the kernel: ``SO_RCVTIMEO``): a stuck server fails that
    one spawn with ``SpawnLost`` (it may have forked already: never started twice) and is
    ended; the next spawn gets a new one."""
    monkeypatch.setattr(spawner, "REQUEST_TIMEOUT_S", 0.5)
    server = SpawnServer()
    try:
        _run(server, work_root, py(PROBE))
        stuck = server.pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        with open(os.devnull, "rb") as stdin, open(os.devnull, "wb") as stdout, pytest.raises(SpawnLost):
            server.spawn(["--", "true"], {}, str(work_root), stdin.fileno(), stdout.fileno())
        wait_until(lambda: server.pid not in (None, stuck) or gone(stuck), 30, "the stuck server to be ended")
        _, probe = _run(server, work_root, py(PROBE))
        assert probe["ppid"] == os.getpid() and server.pid != stuck
    finally:
        server.close()


def test_without_a_working_server_recipes_start_through_the_wrapper(work_root: Path) -> None:
    broken = SpawnServer(python=str(work_root / "no-python-here"))
    try:
        _, probe = _run(broken, work_root, py(PROBE), stdin=b"still runs")
        assert probe["result"].exit_code == 0 and probe["stdin"] == "still runs"  # type: ignore[attr-defined]
        assert probe["ppid"] == os.getpid() and probe["fds"] == [0, 1, 2]
        with pytest.raises(SpawnUnavailable, match="did not start"):
            broken.spawn(["--", "true"], {}, "/", 0, 1)
    finally:
        broken.close()


FAKE_EXECUTOR = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from executor.sandbox import SandboxRun, SandboxSpec
    from executor.sandbox.spawner import SpawnServer
    server = SpawnServer()
    recipe = "import time; print('ready', flush=True); time.sleep(30)"
    run = SandboxRun(SandboxSpec(argv=[sys.executable, "-c", recipe], work_root=Path(sys.argv[1]),
                                 env={"PATH": os.environ["PATH"]}, use_cgroup=False),
                     on_line=lambda line: print(line, flush=True), spawner=server)
    run.start()
    print("child", run.pid, server.pid, run.work_dir.name, flush=True)
    time.sleep(30)                         # hard stop
""")


def test_recipe_and_server_die_with_their_executor(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_EXECUTOR, str(tmp_path / "work")],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        lines = iter(proc.stdout)  # the fake executor prints within seconds and exits in 30 s at most
        _, child, server_pid, run_name = next(x for x in lines if x.startswith("child ")).split()
        next(x for x in lines if x.startswith("ready"))
        assert psutil.Process(int(child)).ppid() == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        wait_until(lambda: gone(int(child)) and gone(int(server_pid)), 5, "recipe and server to die")
        assert marked_processes(run_name) == []
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_task_launch_forks_through_its_pools_server(server: SpawnServer, tmp_path: Path) -> None:
    """The Task's bridge (``SandboxLauncher``) hands each spawn to the pool's server: the recipe
    is listed under the server's keeper thread, where a wrapper's would be under the run's own."""
    pool = dataclasses.replace(pool_context(tmp_path, stubborn_cli_root(tmp_path / "venvs")), spawner=server)
    launcher = SandboxLauncher(pool, "urn:li:dataHubExecutionRequest:through-the-server")
    outcome = Outcome()
    marker = tmp_path / "spawned"
    launcher.start(request("through-the-server", marker), {}, on_exit=outcome)
    try:
        wait_until(lambda: "ready" in launcher.log_tail(), 30, "the recipe to start")
        keeper = next(t for t in threading.enumerate() if t.name == "spawn-server")
        children = Path(f"/proc/{os.getpid()}/task/{keeper.native_id}/children").read_text().split()
        assert launcher.run is not None and str(launcher.run.pid) in children
    finally:
        launcher.kill()
        pool.warm.close()  # the pool's stop: its warm spare (on by default) goes with it
    assert outcome.wait(30) is not None


def test_an_idle_server_stops_and_the_next_spawn_starts_a_new_one(work_root: Path) -> None:
    """No spawn and no child for ``idle_s``: the server exits and its keeper thread ends (an idle
    executor holds neither); a later spawn starts both again."""
    server = SpawnServer(idle_s=0.5)
    try:
        _, first = _run(server, work_root, py(PROBE))
        assert first["ppid"] == os.getpid()
        wait_until(lambda: server.pid is None and not psutil.Process().children(), 30, "the server to stop")
        wait_until(lambda: not [t for t in threading.enumerate() if t.name == "spawn-server"], 30,
                   "the keeper thread to end")
        _, second = _run(server, work_root, py(PROBE), stdin=b"after the idle stop")
        assert second["ppid"] == os.getpid() and second["stdin"] == "after the idle stop"
        assert server.pid is not None, "a new server forked it"
    finally:
        server.close()
    assert not psutil.Process().children(recursive=True)


def _thread_cpu_s(thread: threading.Thread) -> float:
    stat = Path(f"/proc/{os.getpid()}/task/{thread.native_id}/schedstat").read_text()
    return int(stat.split()[0]) / 1e9


def test_a_recipe_that_outlives_the_idle_time_keeps_the_server_without_a_busy_keeper(
        work_root: Path) -> None:
    """Idleness counts only without children: the server stays while a long recipe runs, its
    keeper thread sleeps meanwhile (a spin would use the whole run's time in CPU), and it stops
    once the recipe was reaped and the idle time passed."""
    server = SpawnServer(idle_s=1.0)
    try:
        recipe = ("import time; print('up', flush=True); time.sleep(1.5); print('late', flush=True); "
                  "time.sleep(1)")
        spec = SandboxSpec(argv=py(recipe), work_root=work_root, env=build_env(os.environ, {}, {}, work_root),
                           use_cgroup=False, task_id="spawn-test")
        run = SandboxRun(spec, spawner=server)
        run.start()
        wait_until(lambda: "up" in run.log_tail(), 30, "the recipe to start")
        keeper = next(t for t in threading.enumerate() if t.name == "spawn-server")
        during, pid = _thread_cpu_s(keeper), server.pid
        wait_until(lambda: "late" in run.log_tail(), 30, "the recipe to outlive the idle time")
        assert pid is not None and server.pid == pid, "kept while its child runs"
        result = run.wait(60)
        assert result is not None and result.exit_code == 0, result
        assert _thread_cpu_s(keeper) - during < 0.5, "the keeper slept while the recipe ran"
        wait_until(lambda: server.pid is None, 30, "the idle server to stop after the run")
    finally:
        server.close()



def test_a_close_while_the_server_starts_ends_it_and_its_keeper(tmp_path: Path) -> None:
    """The executor's shutdown may come while its server is still starting (start() returns at
    once): the server must not then wait out its idle time with nobody left to stop it."""
    started, gate = tmp_path / "started", tmp_path / "gate"
    os.mkfifo(gate)
    slow_python = tmp_path / "slow-python"  # holds the start-up until the test has called close()
    slow_python.write_text(f'#!/bin/sh\n: > "{started}"\nread _ < "{gate}"\nexec "{sys.executable}" "$@"\n')
    slow_python.chmod(0o755)
    server = SpawnServer(python=str(slow_python), idle_s=120.0)
    before = {t.ident for t in threading.enumerate()}
    server.start()
    wait_until(started.exists, timeout=30, what="the server's start-up to begin")
    closing = threading.Thread(target=server.close, kwargs={"timeout_s": 30.0})
    closing.start()
    wait_until(lambda: server._closing, timeout=30, what="close() to begin")
    with open(gate, "w") as release:  # the start-up goes on once close() has begun
        release.write("go\n")
    closing.join(60)
    assert not closing.is_alive()
    left = {t.ident for t in threading.enumerate() if t.is_alive()} - before
    assert not left, "the keeper thread outlived close()"
    servers = [p for p in psutil.Process().children() if "--serve" in p.cmdline()]
    assert servers == [], f"a spawn server outlived its close: {servers}"
