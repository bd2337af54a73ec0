"""Tiny exec wrapper that sets up a recipe's process, then becomes it (standard library only).

The executor runs ``python -I -S launch.py [options] -- PROGRAM ARGS...`` in a new session
instead of using ``preexec_fn``: code between fork and exec in a threaded parent can deadlock
on a lock another thread held at fork time, and the executor always has threads. Here the
set-up runs in a fresh single-threaded interpreter, in this order:

1. join the task's cgroups (``--cgroup DIR``, repeated) by writing our pid to ``cgroup.procs``
   (while still privileged: the cgroup files belong to the executor);
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
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from typing import NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
SETUP_FAILED = 126
NOT_FOUND = 127


def fail(message: str, code: int = SETUP_FAILED) -> NoReturn:
    """Say why on stderr (it goes to the task's log) and exit without running anything."""
    sys.stderr.write(f"remote-executor sandbox: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def set_parent_death_signal(parent: int) -> None:
    """Die with SIGKILL when the thread that spawned us dies; exit if it already has."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        fail(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:
        os._exit(SETUP_FAILED)  # the executor died before the prctl took effect
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
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


def join_cgroup(directory: str) -> None:
    try:
        with open(os.path.join(directory, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    except OSError as exc:
        fail(f"cannot join cgroup {directory}: {exc.strerror}")


def set_limit(which: int, soft: int, hard: int) -> None:
    name = {resource.RLIMIT_NOFILE: "open files", resource.RLIMIT_CORE: "core size",
            resource.RLIMIT_AS: "address space", resource.RLIMIT_CPU: "cpu time",
            resource.RLIMIT_FSIZE: "file size"}[which]
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (OSError, ValueError) as exc:
        fail(f"cannot set rlimit {name} to {soft}: {exc}")


def parse(argv: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Options before ``--``, the program after it."""
    options: dict[str, str] = {}
    cgroups: list[str] = []
    single = {"--parent", "--nofile", "--core", "--as", "--cpu", "--fsize", "--user", "--group"}
    index = 0
    while index < len(argv) and argv[index] != "--":
        flag = argv[index]
        if index + 1 >= len(argv):
            fail(f"option {flag} needs a value")
        value = argv[index + 1]
        if flag == "--cgroup":
            cgroups.append(value)
        elif flag in single:
            options[flag[2:]] = value
        else:
            fail(f"unknown option {flag}")
        index += 2
    program = argv[index + 1:]
    if not program:
        fail("no program to run")
    return options, cgroups, program


def main(argv: list[str]) -> None:
    options, cgroups, program = parse(argv)
    for directory in cgroups:
        join_cgroup(directory)
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
        set_parent_death_signal(int(options["parent"]))
    os.umask(0o077)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        os.execvp(program[0], program)  # noqa: S606 (argv, never a shell)
    except FileNotFoundError:
        fail(f"program not found: {program[0]}", NOT_FOUND)
    except OSError as exc:
        fail(f"cannot execute {program[0]}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
