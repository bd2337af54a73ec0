"""Tiny exec wrapper that sets up a recipe's process, then becomes it (standard library only).

The executor runs ``python -I -S launch.py [options] -- PROGRAM ARGS...`` in a new session
instead of using ``preexec_fn``: code between fork and exec in a threaded parent can deadlock
on a lock another thread held at fork time, and the executor always has threads. Here the
set-up runs in a fresh single-threaded interpreter, in this order:

1. join the task's cgroups (``--cgroup DIR``, repeated) by writing our pid to ``cgroup.procs``
   (on v1, "0" to ``tasks``: the same move for a single thread, without the global lock's RCU
   wait) while still privileged: the cgroup files belong to the executor;
2. rlimits: ``--nofile``, ``--core``, ``--as``, ``--cpu SOFT:HARD``, ``--fsize``;
3. with ``--user UID --group GID`` (a pool's ``run_as``): drop supplementary groups, setgid,
   setuid, check that uid 0 cannot be regained, clear ambient capabilities and set
   ``no_new_privs`` (no setuid binary or file capability gives the recipe anything back);
4. parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``; after the uid switch, which
   clears it), then a check that the parent is still ``--parent`` (it may have died before
   the prctl: then exit at once); and "child subreaper" (kept across exec), so a process the
   recipe orphans (double fork, daemon) is re-parented to the recipe's main process instead of
   init and stays in the watched tree;
5. umask 077, default SIGPIPE/SIGXFSZ handling (Python ignores both and exec would keep that);
6. ``execvp`` the program with the environment it was given.

A failed step prints one line starting with ``remote-executor sandbox:`` and exits 126
(127 when the program does not exist). It must not import the ``executor`` package: it runs
with ``-I -S`` so nothing from the recipe's environment can change what it loads.

``--serve FD --parent PID`` makes it the executor's *spawn server* instead (``serve``): it
stays up, receives spawn requests on the unix socket FD (``executor.sandbox.spawner`` sends
them, the stdio pipes attached), and for each forks a child that does the same set-up and
exec. A fork of this small, already started interpreter costs about a millisecond, where a
new interpreter per recipe costs tens of milliseconds of CPU.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import signal
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the spawn server about a megabyte it would copy at every fork
    from typing import Any, NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
SETUP_FAILED = 126
NOT_FOUND = 127
CLONE_PARENT = 0x00008000
SYS_CLONE = {"x86_64": 56, "aarch64": 220}
"""clone(2)'s number where its first argument is the flags (the others stay zero here)."""
MAX_REQUEST = 256 * 1024
UNSUPPORTED = "unsupported"


def fail(message: str, code: int = SETUP_FAILED) -> NoReturn:
    """Say why on stderr (it goes to the task's log) and exit without running anything."""
    sys.stderr.write(f"remote-executor sandbox: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def set_parent_death_signal(parent: int, subreaper: bool = True, libc: Any = None) -> None:
    """Die with SIGKILL when the thread that spawned us dies; exit if it already has.

    ``libc``: one loaded already (the spawn server's), so a forked child does not load it again.
    """
    import ctypes

    libc = libc or ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        fail(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:
        os._exit(SETUP_FAILED)  # the executor died before the prctl took effect
    if subreaper and libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")


def switch_user(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good: no supplementary groups, no way back, no new privileges."""
    import ctypes

    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        fail(f"cannot switch to uid {uid} gid {gid}: {exc.strerror} (the executor needs CAP_SETUID "
             "and CAP_SETGID for run_as)")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        fail(f"the switch to uid {uid} gid {gid} did not take")
    drop_capabilities()
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        fail("uid 0 could be regained after the switch")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")


def drop_capabilities() -> None:
    """Empty the effective, permitted, inheritable and ambient sets.

    Leaving uid 0 clears them by itself; an executor that is not root but holds capabilities
    (ambient, from systemd or a container runtime) would otherwise keep them across the switch.
    """
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # EINVAL on old kernels: none to clear
    if libc.capset(ctypes.byref(Header(CAPABILITY_VERSION_3, 0)), (Data * 2)()) != 0:
        fail(f"cannot drop capabilities: {os.strerror(ctypes.get_errno())}")


def join_file(directory: str, alone: bool) -> str:
    """Where a process joins the cgroup ``directory``. On cgroup v1 a single-threaded
    (``alone``) process writes "0" (itself) to ``tasks``: the kernel then skips the global
    threadgroup lock that a ``cgroup.procs`` write takes, whose RCU grace period cost 13-16 ms
    of wall time per join. A process with more threads must move whole: ``cgroup.procs``."""
    tasks = os.path.join(directory, "tasks")
    return tasks if alone and os.path.exists(tasks) else os.path.join(directory, "cgroup.procs")


def join_cgroup(directory: str, procs: int | None = None) -> None:
    """Move this process into the cgroup ``directory`` (``procs``: its join file, opened already
    by the spawn server for its single-threaded child, which leaves the child only the write)."""
    try:
        fd = procs if procs is not None else os.open(
            join_file(directory, len(os.listdir("/proc/self/task")) == 1), os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")  # "0": the writing process itself, in either file
    except OSError as exc:
        fail(f"cannot join cgroup {directory}: {exc.strerror}")
    if procs is None:
        os.close(fd)


LIMIT_NAMES = {resource.RLIMIT_NOFILE: "open files", resource.RLIMIT_CORE: "core size",
               resource.RLIMIT_AS: "address space", resource.RLIMIT_CPU: "cpu time",
               resource.RLIMIT_FSIZE: "file size"}


def set_limit(which: int, soft: int, hard: int) -> None:
    name = LIMIT_NAMES[which]
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (OSError, ValueError) as exc:
        fail(f"cannot set rlimit {name} to {soft}: {exc}")


class BadRequest(ValueError):
    """A command line or spawn request this wrapper cannot follow."""


def parse(argv: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Options before ``--``, the program after it."""
    options: dict[str, str] = {}
    cgroups: list[str] = []
    single = {"--parent", "--nofile", "--core", "--as", "--cpu", "--fsize", "--user", "--group"}
    index = 0
    while index < len(argv) and argv[index] != "--":
        flag = argv[index]
        if index + 1 >= len(argv):
            raise BadRequest(f"option {flag} needs a value")
        value = argv[index + 1]
        if flag == "--cgroup":
            cgroups.append(value)
        elif flag in single:
            options[flag[2:]] = value
        else:
            raise BadRequest(f"unknown option {flag}")
        index += 2
    program = argv[index + 1:]
    if not program:
        raise BadRequest("no program to run")
    return options, cgroups, program


def set_up(options: dict[str, str], cgroups: list[str], procs: dict[str, int | str] | None = None,
           libc: Any = None) -> None:
    """Everything between the fork and the exec, in the order the module doc gives.

    ``procs`` and ``libc`` come from the spawn server: each cgroup's ``cgroup.procs`` opened
    before the fork (or why it could not be), and libc loaded once.
    """
    for directory in cgroups:
        opened = (procs or {}).get(directory)
        if isinstance(opened, str):
            fail(f"cannot join cgroup {directory}: {opened}")
        join_cgroup(directory, opened)
    for flag, which in (("nofile", resource.RLIMIT_NOFILE), ("core", resource.RLIMIT_CORE),
                        ("as", resource.RLIMIT_AS), ("fsize", resource.RLIMIT_FSIZE)):
        if flag in options:
            value = int(options[flag])
            set_limit(which, value, value)
    if "cpu" in options:
        soft, _, hard = options["cpu"].partition(":")
        set_limit(resource.RLIMIT_CPU, int(soft), int(hard or soft))
    if "user" in options:
        switch_user(int(options["user"]), int(options.get("group", options["user"])))
    if "parent" in options:
        set_parent_death_signal(int(options["parent"]), libc=libc)
    os.umask(0o077)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)


def run_program(program: list[str], env: dict[str, str] | None = None) -> NoReturn:
    """Become the program (``env``: its environment, default ours); never returns."""
    try:
        if env is None:
            os.execvp(program[0], program)  # noqa: S606 (argv, never a shell)
        else:
            os.execvpe(program[0], program, env)  # noqa: S606
    except FileNotFoundError:
        fail(f"program not found: {program[0]}", NOT_FOUND)
    except OSError as exc:
        fail(f"cannot execute {program[0]}: {exc.strerror}")
    raise AssertionError("unreachable")  # exec either replaced this process or failed


def main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        serve(argv[1:])
        return
    try:
        options, cgroups, program = parse(argv)
    except BadRequest as exc:
        fail(str(exc))
    set_up(options, cgroups)
    run_program(program)


# -- the spawn server ---------------------------------------------------------------------------
def serve(argv: list[str]) -> None:
    """Answer spawn requests on the socket until the executor closes it (or dies: then the
    parent-death signal ends this process too).

    A request is one datagram: JSON ``{"args": [options..., "--", program...], "env": {...},
    "cwd": "..."}`` with the recipe's stdin and stdout pipes attached (SCM_RIGHTS). The answer
    is ``{"pid": N}`` or ``{"error": "...", "unsupported": bool}``. The child is made with
    ``CLONE_PARENT``: it is the *executor's* child, not this server's, so the executor waits
    for it, gets its exit status and its parent-death signal, exactly as after a ``Popen``.
    """
    if len(argv) != 3 or argv[1] != "--parent" or not argv[0].isdigit() or not argv[2].isdigit():
        fail("usage: launch.py --serve FD --parent PID")
    import ctypes

    channel = socket.socket(fileno=int(argv[0]))
    channel.set_inheritable(False)  # no recipe may ever hold it
    libc = ctypes.PyDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no same-uid process may ptrace or read this one
    set_parent_death_signal(int(argv[2]), subreaper=False)
    clone = SYS_CLONE.get(os.uname().machine)
    gc.freeze()  # what start-up made is never collected: a child's collection does not touch it
    channel.send(json.dumps({"ready": True, "clone": clone is not None}).encode())
    while True:
        try:
            data, ancillary, flags, _ = channel.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(4 * 4),
                                                        socket.MSG_CMSG_CLOEXEC)
        except OSError:
            return
        if not data:
            return  # the executor closed its end
        fds = _received_fds(ancillary)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            _close_all(fds)
            reply: dict[str, object] = {"error": "request too large"}
        else:
            reply = _spawn(data, fds, libc, clone)
        channel.send(json.dumps(reply).encode())


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True) for i in range(0, usable, 4)]
    return fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _spawn(data: bytes, fds: list[int], libc: Any, clone: int | None) -> dict[str, object]:
    """Fork one child for the request (the child never comes back here)."""
    try:
        request = json.loads(data)
        args, env, cwd = request["args"], request["env"], request["cwd"]
        if (len(fds) != 2 or not isinstance(cwd, str) or not isinstance(args, list)
                or not all(isinstance(a, str) for a in args) or not isinstance(env, dict)
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise BadRequest("a request needs args, env, cwd and two descriptors")
        options, cgroups, program = parse(args)
    except (ValueError, KeyError, TypeError) as exc:
        _close_all(fds)
        return {"error": f"bad request: {exc}"}
    if clone is None:
        _close_all(fds)
        return {"error": f"no clone(2) number known for {os.uname().machine}", UNSUPPORTED: True}
    import ctypes

    procs = _open_procs(cgroups)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    pid = syscall(ctypes.c_long(clone), ctypes.c_ulong(CLONE_PARENT | signal.SIGCHLD), ctypes.c_ulong(0),
                  ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if pid == 0:
        gc.disable()  # nothing to collect before the exec; a collection would only copy pages
        try:
            _child(fds, cwd, options, cgroups, program, env, procs, libc)
        except BaseException as exc:  # the child must never return into the server loop
            fail(f"set-up failed: {type(exc).__name__}: {exc}")
        finally:
            os._exit(SETUP_FAILED)
    error = ctypes.get_errno()
    _close_all(fds + [fd for fd in procs.values() if isinstance(fd, int)])
    if pid < 0:
        return {"error": f"clone(CLONE_PARENT) failed: {os.strerror(error)}", UNSUPPORTED: True}
    return {"pid": pid}


def _open_procs(cgroups: list[str]) -> dict[str, int | str]:
    """Each cgroup's join file opened for the child (close-on-exec; the forked child is
    single-threaded, so ``join_file`` picks v1's ``tasks``), or why it could not be: the child
    then only writes, the least work between fork and exec (every page it touches is copied)."""
    procs: dict[str, int | str] = {}
    for directory in cgroups:
        try:
            procs[directory] = os.open(join_file(directory, alone=True), os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            procs[directory] = exc.strerror or str(exc)
    return procs


def _child(fds: list[int], cwd: str, options: dict[str, str], cgroups: list[str], program: list[str],
           env: dict[str, str], procs: dict[str, int | str], libc: Any) -> NoReturn:
    """In the new process: its own session, the pipes as stdio, the work dir, then ``set_up``."""
    os.setsid()
    stdin, stdout = fds
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stdout, 2)
    _close_all(fds)  # every other descriptor of the server is close-on-exec
    try:
        os.chdir(cwd)
    except OSError as exc:
        fail(f"cannot enter the work dir: {exc.strerror}")
    set_up(options, cgroups, procs, libc)
    run_program(program, env)


if __name__ == "__main__":
    main(sys.argv[1:])
