"""The spawn server: one small helper process that forks recipes, so a spawn costs no interpreter start.

Without it every recipe starts a second Python first (``python -I -S launch.py``, the exec
wrapper: tens of milliseconds of CPU) because the set-up between fork and exec (cgroup join,
rlimits, uid switch, parent-death signal...) cannot run in the threaded executor
(``preexec_fn`` may deadlock there). The server is that same ``launch.py``, started once
(``--serve``): single-threaded, standard library only, run with ``-I -S``. For each request
it forks a child with ``CLONE_PARENT``, which does the same set-up as the wrapper and execs.

Why each property holds:

* **The recipe is the executor's own child** (``CLONE_PARENT``): the executor waits for it
  and reads its exit status as after a ``Popen`` (``ServerPopen`` *is* a ``Popen``); the
  server never reaps anything, and its death does not touch a running recipe.
* **Parent death**: the recipe's parent-death signal follows the executor thread that
  started the server: the keeper thread here, which lives as long as this ``SpawnServer``
  and never ends while a recipe it parented runs (``close`` waits for them). The server has
  its own parent-death signal too. The ``--parent`` check in the child is the same.
* **Nothing else can talk to the server**: the channel is a ``socketpair`` (no name on any
  filesystem); the executor's end is close-on-exec, the server's end is made close-on-exec
  at its start, and a child keeps only the two pipes it was sent, as stdio. The server is
  not dumpable, so a recipe of the same uid cannot ptrace it or take its descriptors.
* **Privileges**: the server has the executor's (it is started like the wrapper was), so
  ``run_as`` works the same; a recipe that switches uid does so in its own child.
* **Errors per request**: a bad request or a failed fork is answered with an error; a
  failed set-up step is written to the recipe's own output and exits 126, as the wrapper's.
* **Its own death**: the keeper thread sees it and starts a new one on the next request;
  that request, and any spawn the server cannot take (it never started, the kernel refuses
  ``CLONE_PARENT``, a request too big), falls back to the exec wrapper.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

LAUNCHER = Path(__file__).with_name("launch.py")
START_TIMEOUT_S = 10.0
"""How long the server may take to say it is ready (an interpreter start on a loaded host)."""
REQUEST_TIMEOUT_S = 5.0
"""How long one spawn may take to be answered (a fork: about a millisecond)."""
RESTARTS_PER_MINUTE = 5
"""A server that dies more often than this is given up on: spawns use the exec wrapper."""
IDLE_S = 30.0
"""A server without a spawn or a child of its own for this long stops, and its keeper thread
ends: an idle executor holds neither. At rest the server costs about 12 MB of RSS (6 MB of PSS)
and a thread, and no CPU; a new one costs one interpreter start (40-50 ms of CPU on a loaded
2-core host), overlapping the next launch's own preparation. Tasks that come back to back keep
it; an executor whose tasks come minutes apart pays that start once per task, small beside a
run's own cost."""


def _kernel_timeouts(channel: socket.socket, timeout_s: float) -> None:
    """Bound each send and receive on ``channel`` by ``timeout_s`` in the kernel (``SO_SNDTIMEO``,
    ``SO_RCVTIMEO``; the call then fails with ``EAGAIN``), on a blocking socket: a Python socket
    timeout costs a ``poll`` before every call, two more syscalls per spawn."""
    seconds = int(timeout_s)
    value = struct.pack("ll", seconds, int((timeout_s - seconds) * 1e6))
    channel.settimeout(None)
    channel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    channel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)


class SpawnUnavailable(Exception):
    """The server cannot take this spawn and nothing was started: use the exec wrapper."""


class SpawnLost(Exception):
    """The server took the request but gave no answer: it may have forked the recipe already, so
    starting it again would run it twice. The run fails instead; its cgroup and the marker sweep
    end a child that was forked before the server was ended."""


class ServerPopen(subprocess.Popen[bytes]):
    """A ``Popen`` whose child the spawn server forked: ``wait``, ``poll``, signals, pipes as usual.

    Only ``_execute_child`` differs (the first 15 of its arguments have been the same since
    Python 3.7): instead of fork + exec here, the server gets the command and the child's
    ends of the pipes, and answers with the pid of a child of this process.
    """

    def __init__(self, server: SpawnServer, launcher_args: Sequence[str], argv: Sequence[str],
                 **kwargs: Any) -> None:
        self._server = server
        self._launcher_args = list(launcher_args)
        super().__init__(list(argv), **kwargs)

    def _execute_child(self, args: Any, *rest: Any) -> None:
        cwd, env, p2cread, c2pwrite = rest[4], rest[5], rest[9], rest[12]
        if p2cread == -1 or c2pwrite == -1 or env is None or cwd is None:
            raise ValueError("the spawn server needs stdin and stdout pipes, an env and a cwd")
        pid = self._server.spawn([*self._launcher_args, "--", *args], env, os.fspath(cwd), p2cread, c2pwrite)
        self.pid = pid
        self._child_created = True
        os.close(p2cread)
        os.close(c2pwrite)
        self._closed_child_pipe_fds = True


class SpawnServer:
    """One server process, kept by a thread; ``spawn`` is safe to call from any thread."""

    def __init__(self, python: str = sys.executable, idle_s: float = IDLE_S) -> None:
        self._python = python
        self._idle_s = idle_s
        self._last_used = time.monotonic()
        self._state = threading.Condition()
        self._request_lock = threading.Lock()
        self._channel: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._unusable: str | None = None
        self._wanted = False
        self._closing = False
        self._children = 0
        self._deaths: list[float] = []
        self._thread: threading.Thread | None = None
        self._wake: int | None = None
        """The write end of the keeper's wake-up pipe: once its idle time is over and only
        children keep it, ``reaped`` of the last one wakes it (``_reap_wakes``), so the idle stop
        comes ``IDLE_S`` after the last use, not a wait later. Before that it waits until the
        idle time is over (no wake-up a task)."""
        self._reap_wakes = False

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def start(self) -> None:
        """Start the server in the background (``spawn`` does this too); returns at once."""
        with self._state:
            if self._closing or self._unusable is not None:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._keep, name="spawn-server", daemon=True)
                self._thread.start()
            self._wanted = True
            self._last_used = time.monotonic()
            self._state.notify_all()

    def spawn(self, args: Sequence[str], env: Mapping[str, str], cwd: str, stdin_fd: int,
              stdout_fd: int) -> int:
        """Fork ``launch.py``'s set-up and exec of ``args`` (options, ``--``, program); the pid."""
        channel = self._ready_channel()
        payload = json.dumps({"args": list(args), "env": dict(env), "cwd": cwd}).encode()
        with self._request_lock:
            try:
                socket.send_fds(channel, [payload], [stdin_fd, stdout_fd])
            except OSError as exc:  # nothing reached the server: nothing was started
                raise SpawnUnavailable(f"the spawn server did not take the request: {exc.strerror}") from None
            try:
                answer = channel.recv(4096)
            except OSError as exc:
                # Dead or stuck with the request: a late answer must not meet the next request, so
                # it is ended (a child it may have forked finds no stdin: no recipe, no secret).
                logger.warning("the spawn server did not answer a spawn ({}); the run fails", exc)
                self._abandon()
                raise SpawnLost("the spawn server took the request and did not answer") from None
        reply = json.loads(answer) if answer else {"error": "the spawn server closed its end"}
        if "pid" in reply:
            with self._state:
                self._children += 1
                self._last_used = time.monotonic()
            return int(reply["pid"])
        if reply.get("unsupported"):
            self._give_up(str(reply.get("error")))
        raise SpawnUnavailable(f"the spawn server refused the spawn: {reply.get('error')}")

    def reaped(self, used: bool = True) -> None:
        """A child it forked has been waited for (the keeper thread may end once none is left).
        ``used``: it ran (the idle time counts from now); a held recipe that never got its input,
        a warm spare killed unused, leaves the idle time counting from its spawn."""
        with self._state:
            self._children = max(0, self._children - 1)
            if used:
                self._last_used = time.monotonic()
            self._state.notify_all()
            if self._children == 0 and self._reap_wakes and self._wake is not None:
                self._reap_wakes = False
                with contextlib.suppress(BlockingIOError):  # a full pipe wakes the keeper anyway
                    os.write(self._wake, b"!")

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the server; the keeper thread ends once every child it parented was reaped."""
        with self._state:
            self._closing = True
            channel, proc, thread = self._channel, self._proc, self._thread
            self._state.notify_all()
        if channel is not None:
            channel.shutdown(socket.SHUT_RDWR)  # the server reads EOF and exits
        if proc is not None:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
        if thread is not None:
            thread.join(timeout_s)

    # -- the keeper thread ----------------------------------------------------------------------
    def _ready_channel(self) -> socket.socket:
        self.start()
        with self._state:
            self._state.wait_for(lambda: self._channel is not None or self._unusable is not None
                                 or self._closing, START_TIMEOUT_S)
            if self._channel is None:
                raise SpawnUnavailable(self._unusable or "the spawn server is not running")
            return self._channel

    def _keep(self) -> None:
        """Start the server when wanted, wait for it, start a new one after its death; end when
        it was stopped for idleness and nothing wants it again."""
        while True:
            with self._state:
                self._state.wait_for(lambda: self._wanted or self._closing)
                if self._closing:
                    break
            try:
                proc, channel = self._launch()
            except (OSError, ValueError) as exc:
                self._give_up(f"the spawn server did not start: {exc}")
                break
            with self._state:
                self._proc, self._channel = proc, channel
                self._last_used = time.monotonic()  # idle from now on, not from the start() call
                self._state.notify_all()
                if self._closing:  # close() came while it started: it found nothing to shut down
                    channel.shutdown(socket.SHUT_RDWR)
            idled = self._wait_while_used(proc, channel)
            code = proc.wait()
            with self._state:
                self._proc, self._channel = None, None
                self._wanted = self._wanted and idled  # a start() during the idle stop wants a new one
                closing = self._closing
                if idled and not self._wanted and not closing and self._children == 0:
                    self._thread = None  # a later start() makes a new keeper
                    channel.close()
                    return
            channel.close()
            if not closing and not idled:
                self._died(code)
        with self._state:  # the parent-death signal of these children follows this thread
            self._state.wait_for(lambda: self._children == 0)

    def _wait_while_used(self, proc: subprocess.Popen[bytes], channel: socket.socket) -> bool:
        """Block until the server exits (False) or has been idle long enough and was told to stop
        (True). Waits on a pidfd: no polling, no CPU while idle."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:  # a kernel before 5.3: keep it for good
            proc.wait()
            return False
        wake, write_end = os.pipe()
        os.set_blocking(write_end, False)
        with self._state:
            self._wake = write_end
        try:
            while True:
                with self._state:  # past the idle time with children: until the last one's reap
                    left = self._last_used + self._idle_s - time.monotonic()
                    self._reap_wakes = self._children > 0 and left <= 0
                    reap_wakes = self._reap_wakes
                if reap_wakes or left > 0:
                    ready = select.select([pidfd, wake], [], [], None if reap_wakes else left)[0]
                    if pidfd in ready:
                        return False
                    if wake in ready:
                        os.read(wake, 64)
                    continue
                if not self._request_lock.acquire(blocking=False):  # never stop it mid-request
                    if select.select([pidfd], [], [], 0.05)[0]:
                        return False
                    continue
                try:
                    with self._state:
                        if self._children or time.monotonic() - self._last_used < self._idle_s:
                            continue
                        self._channel, self._wanted = None, False
                    channel.shutdown(socket.SHUT_RDWR)  # the server reads EOF and exits
                finally:
                    self._request_lock.release()
                logger.debug("spawn server {} idle for {:.0f}s; stopped", proc.pid, self._idle_s)
                return True
        finally:
            with self._state:
                self._wake = None
            os.close(write_end)
            os.close(wake)
            os.close(pidfd)

    def _launch(self) -> tuple[subprocess.Popen[bytes], socket.socket]:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                [self._python, "-I", "-S", str(LAUNCHER), "--serve", str(theirs.fileno()),
                 "--parent", str(os.getpid())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={}, start_new_session=True, close_fds=True,
            )
        finally:
            theirs.close()
        mine.settimeout(START_TIMEOUT_S)
        try:
            ready = json.loads(mine.recv(4096) or b"{}")
        except (OSError, ValueError):
            ready = {}
        if not ready.get("ready") or not ready.get("clone"):
            proc.kill()
            proc.wait()
            mine.close()
            raise ValueError("no clone(CLONE_PARENT) here" if ready.get("ready") else "it never said ready")
        _kernel_timeouts(mine, REQUEST_TIMEOUT_S)
        logger.debug("spawn server {} ready", proc.pid)
        return proc, mine

    def _abandon(self) -> None:
        """Kill the server (the keeper thread then sees it die and starts a new one when needed)."""
        with self._state:
            proc = self._proc
        if proc is not None:
            proc.kill()

    def _died(self, code: int) -> None:
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < 60] + [now]
        if len(self._deaths) > RESTARTS_PER_MINUTE:
            self._give_up(f"the spawn server died {len(self._deaths)} times within a minute (last: {code})")
        else:
            logger.warning("the spawn server exited ({}); a new one starts with the next spawn", code)

    def _give_up(self, reason: str) -> None:
        with self._state:
            if self._unusable is None:
                logger.warning("{}; recipes start through the exec wrapper instead", reason)
            self._unusable = reason
            self._state.notify_all()
