"""Tiny exec wrapper that sets up a recipe's process, then becomes it (standard library only).

The executor runs ``python -I -S launch.py [options] -- PROGRAM ARGS...`` in a new session
instead of using ``preexec_fn``: code between fork and exec in a threaded parent can deadlock
on a lock another thread held at fork time, and the executor always has threads. Here the
set-up runs in a fresh single-threaded interpreter, in this order (docs/sandbox.md says why):

1. join the task's cgroups (``--cgroup DIR``, repeated; which file: ``open_joins``) while still
   privileged: the cgroup files belong to the executor;
2. rlimits: ``--nofile``, ``--core``, ``--as``, ``--cpu SOFT:HARD``, ``--fsize``;
3. with ``--user UID --group GID`` (a pool's ``run_as``): ``switch_user``, for good;
4. parent-death signal (after the uid switch, which clears it), exit at once if the parent is
   no longer ``--parent``, and "child subreaper" (kept across exec): a process the recipe
   orphans is re-parented to the recipe's main process and stays in the watched tree;
5. umask 077, default SIGPIPE/SIGXFSZ handling (Python ignores both and exec would keep that),
   and ``--policy N``: the executor's original scheduling policy (``executor.scheduling``);
6. ``execvp`` the program with the environment it was given.

A failed step prints one line starting with ``remote-executor sandbox:`` and exits 126
(127 when the program does not exist). It must not import the ``executor`` package: it runs
with ``-I -S`` so nothing from the recipe's environment can change what it loads.

``--serve FD --parent PID`` makes it the executor's *spawn server* instead (``serve``): it
stays up and forks a child per spawn request that does the same set-up (worked out before the
fork: ``prepare``) and exec. A fork of this small, started interpreter costs about a
millisecond of CPU, a new interpreter tens of milliseconds.
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
    from typing import Any, NoReturn, TypeAlias

    Plan: TypeAlias = tuple[list[tuple[str, "int | str"]], list[tuple[int, int, int]],
                            "tuple[int, int] | None", "int | None", Any, "int | None"]
    """(cgroup join files, rlimits, (uid, gid), parent pid, libc, policy): see ``prepare``."""

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
    if libc is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0:
        fail(f"prctl(PR_SET_PDEATHSIG) failed: {_errno()}")
    if os.getppid() != parent:
        os._exit(SETUP_FAILED)  # the executor died before the prctl took effect
    if subreaper and libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {_errno()}")


def _errno() -> str:
    import ctypes

    return os.strerror(ctypes.get_errno())


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


def open_joins(cgroups: list[str], alone: bool) -> list[tuple[str, int | str]]:
    """Each cgroup's join file opened (close-on-exec), or why it could not be: the process that
    joins then only writes "0" (the writer itself, in either file). On cgroup v1 a
    single-threaded (``alone``) process joins through ``tasks``: the kernel then skips the
    global threadgroup lock that a ``cgroup.procs`` write takes, whose RCU grace period cost
    13-16 ms of wall time per join. A process with more threads must move whole: ``cgroup.procs``."""
    joins: list[tuple[str, int | str]] = []
    for directory in cgroups:
        tasks = os.path.join(directory, "tasks")
        path = tasks if alone and os.path.exists(tasks) else os.path.join(directory, "cgroup.procs")
        try:
            joins.append((directory, os.open(path, os.O_WRONLY | os.O_CLOEXEC)))
        except OSError as exc:
            joins.append((directory, exc.strerror or str(exc)))
    return joins


def join_cgroups(joins: list[tuple[str, int | str]]) -> None:
    """Write "0" (the writer itself) to each opened join file (``open_joins``), in order."""
    for directory, fd in joins:
        if isinstance(fd, str):
            fail(f"cannot join cgroup {directory}: {fd}")
        try:
            os.write(fd, b"0")
        except OSError as exc:
            fail(f"cannot join cgroup {directory}: {exc.strerror}")


LIMIT_NAMES = {resource.RLIMIT_NOFILE: "open files", resource.RLIMIT_CORE: "core size",
               resource.RLIMIT_AS: "address space", resource.RLIMIT_CPU: "cpu time",
               resource.RLIMIT_FSIZE: "file size"}
LIMIT_FLAGS = (("nofile", resource.RLIMIT_NOFILE), ("core", resource.RLIMIT_CORE),
               ("as", resource.RLIMIT_AS), ("fsize", resource.RLIMIT_FSIZE))
SIGKILL, SIGPIPE, SIGXFSZ, SIG_DFL = (int(signal.SIGKILL), int(signal.SIGPIPE), int(signal.SIGXFSZ),
                                      int(signal.SIG_DFL))


def planned_limits(options: dict[str, str]) -> list[tuple[int, int, int]]:
    """The rlimits to set, as (resource, soft, hard), each within the hard limit we already have
    (a fork inherits it: the spawn server's child has the server's)."""
    wanted = [(which, int(options[flag]), int(options[flag]))
              for flag, which in LIMIT_FLAGS if flag in options]
    if "cpu" in options:
        cpu_soft, _, cpu_hard = options["cpu"].partition(":")
        wanted.append((resource.RLIMIT_CPU, int(cpu_soft), int(cpu_hard or cpu_soft)))
    limits = []
    for which, soft, hard in wanted:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        limits.append((which, soft, hard))
    return limits


def prepare(options: dict[str, str], cgroups: list[str], libc: Any = None, alone: bool = True) -> Plan:
    """Everything the set-up needs, worked out before the fork (a bad value raises ValueError):
    the forked child then only makes the system calls (``apply``). Every page a forked child
    writes is copied from the spawn server, and Python writes the objects it merely uses (their
    reference counts), so the child's share is kept to the calls themselves."""
    user = None
    if "user" in options:
        user = (int(options["user"]), int(options.get("group", options["user"])))
    parent = int(options["parent"]) if "parent" in options else None
    limits = planned_limits(options)
    policy = int(options["policy"]) if "policy" in options else None
    return open_joins(cgroups, alone), limits, user, parent, libc, policy


def apply(plan: Plan) -> None:
    """The set-up, in the order the module doc gives (a failed step ends the process, 126; the
    policy is best effort: a recipe left under the executor's SCHED_BATCH runs all the same)."""
    joins, limits, user, parent, libc, policy = plan
    join_cgroups(joins)
    for which, soft, hard in limits:
        try:
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as exc:
            fail(f"cannot set rlimit {LIMIT_NAMES[which]} to {soft}: {exc}")
    if user is not None:
        switch_user(*user)
    if parent is not None:
        set_parent_death_signal(parent, libc=libc)
    os.umask(0o077)
    signal.signal(SIGPIPE, SIG_DFL)
    signal.signal(SIGXFSZ, SIG_DFL)
    if policy is not None:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, policy, os.sched_param(0))


class BadRequest(ValueError):
    """A command line or spawn request this wrapper cannot follow."""


def parse(argv: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Options before ``--``, the program after it."""
    options: dict[str, str] = {}
    cgroups: list[str] = []
    single = {"--parent", "--nofile", "--core", "--as", "--cpu", "--fsize", "--user", "--group", "--policy"}
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


def run_program(program: list[str], env: dict[str, str] | None = None) -> NoReturn:
    """Become the program (``env``: its environment, default ours); never returns."""
    try:
        if env is None:
            os.execvp(program[0], program)  # noqa: S606 (argv, never a shell)
        elif "/" in program[0]:
            os.execve(program[0], program, env)  # noqa: S606 (execvpe's own move for a path)
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
    try:
        plan = prepare(options, cgroups, alone=len(os.listdir("/proc/self/task")) == 1)
    except ValueError as exc:
        fail(f"bad option value: {exc}")
    apply(plan)
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
        plan = prepare(options, cgroups, libc)  # the forked child is single-threaded: alone
    except (ValueError, KeyError, TypeError) as exc:
        _close_all(fds)
        return {"error": f"bad request: {exc}"}
    joined = [fd for _, fd in plan[0] if isinstance(fd, int)]
    if clone is None:
        _close_all(fds + joined)
        return {"error": f"no clone(2) number known for {os.uname().machine}", UNSUPPORTED: True}
    import ctypes

    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    pid = syscall(ctypes.c_long(clone), ctypes.c_ulong(CLONE_PARENT | signal.SIGCHLD), ctypes.c_ulong(0),
                  ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if pid == 0:
        gc.disable()  # nothing to collect before the exec; a collection would only copy pages
        try:
            _child(fds[0], fds[1], cwd, plan, program, env)
        except BaseException as exc:  # the child must never return into the server loop
            fail(f"set-up failed: {type(exc).__name__}: {exc}")
        finally:
            os._exit(SETUP_FAILED)
    error = ctypes.get_errno()
    _close_all(fds + joined)
    if pid < 0:
        return {"error": f"clone(CLONE_PARENT) failed: {os.strerror(error)}", UNSUPPORTED: True}
    return {"pid": pid}


def _child(stdin: int, stdout: int, cwd: str, plan: Plan, program: list[str],
           env: dict[str, str]) -> NoReturn:
    """In the new process: its own session, the pipes as stdio, the work dir, then the set-up
    ``prepare`` worked out in the server (system calls only), then the exec."""
    os.setsid()
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stdout, 2)
    os.close(stdin)  # every other descriptor of the server is close-on-exec
    os.close(stdout)
    try:
        os.chdir(cwd)
    except OSError as exc:
        fail(f"cannot enter the work dir: {exc.strerror}")
    apply(plan)
    run_program(program, env)


if __name__ == "__main__":
    main(sys.argv[1:])
