"""Names for the executor's threads, as Python and as the kernel show them.

pykka names an actor's thread after its class and a counter (``CredentialLeaser-7``), and the
kernel knows every thread as ``python``, so ``top -H``, ``ps -L`` or ``py-spy dump`` cannot tell
the poller of one pool from the reporter of another. Each long-lived thread names itself on
start: the Python name is its place in the tree (``root/pool:default/poller``), the kernel's
(``/proc/<pid>/task/<tid>/comm``, at most 15 bytes) a short form of it (``poller@default``).
A strand (``executor.supervision.strand``) names its thread: an actor's own strand after the
actor, a shared one after what it hosts (``control``, ``reporters``, ``pool@default``).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

PR_SET_NAME = 15
COMM_MAX = 15
"""The kernel keeps 16 bytes, the last one a NUL."""

_libc: ctypes.CDLL | None = None


def comm_of(path: str) -> str:
    """The kernel name for a tree path: the child's own name, then ``@`` and its pool id.

    ``root`` -> ``root``; ``root/pool:default`` -> ``pool:default``;
    ``root/pool:default/poller`` -> ``poller@default``; a Task keeps its own name.
    """
    parts = path.split("/")
    name = parts[-1]
    pool = next((p.removeprefix("pool:") for p in parts[:-1] if p.startswith("pool:")), None)
    if pool is not None and not name.startswith("task"):
        name = f"{name}@{pool}"
    return name[:COMM_MAX]


def name_this_thread(name: str, comm: str | None = None) -> None:
    """Name the calling thread: ``name`` for Python, ``comm`` (or ``name``) for the kernel.

    Best effort: a kernel without ``prctl`` (or a libc that cannot be loaded) keeps ``python``.
    A spare thread names itself twice per job (``spare_threads``), so ``prctl`` (which never
    blocks) runs with the GIL held (``PyDLL``): a ``CDLL`` call lets the GIL go and must win it
    back, a hand-over to another thread and back on a busy executor.
    """
    global _libc
    threading.current_thread().name = name
    short = (comm or name).encode("utf-8", "replace")[:COMM_MAX]
    with contextlib.suppress(OSError, AttributeError):
        if _libc is None:
            _libc = ctypes.PyDLL(None, use_errno=True)
        _libc.prctl(PR_SET_NAME, short, 0, 0, 0)
