"""Keeping the C heap small: few malloc arenas, and free memory given back once at rest.

glibc gives each thread that allocates while another holds the main arena an arena of its own
(up to 8 per core, each a 64 MB reservation whose touched pages stay), and the executor has a
thread per actor, per running task and per output stream, all allocating under the GIL: extra
arenas buy no parallelism, only pages that freed memory leaves spread over them.
``limit_malloc_arenas`` caps them at start-up (``M_ARENA_MAX``), before the threads exist, at
one: a second arena shared by the other threads held about 1 MB more at rest (idle RSS 62.7 ->
61.6 MB with one pool after a few tasks), and its lock is taken under the GIL all the same.

A task's run allocates from the C heap (pipe reads, log buffers, HTTP bodies, JSON); when it
is over, glibc keeps the freed pages for reuse, so an executor that ran one task stays about
3-4 MB larger at rest than it needs to be. ``malloc_trim(0)`` returns them; it costs about
0.15 ms, so the runner calls it when its last task has ended, never on a timer.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any

_trim: Any = None
_looked_up = False
M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number (malloc.h)."""
ARENAS = 1
"""The main arena, shared by every thread."""


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before threads start); False where the C library has no
    ``mallopt`` (musl, macOS) or refused, where nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        return bool(mallopt(M_ARENA_MAX, arenas))
    return False


def trim_heap() -> bool:
    """Return free C-heap pages to the OS; False where the C library has no ``malloc_trim``
    (musl, macOS), where there is nothing to do."""
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        with contextlib.suppress(OSError, AttributeError):
            _trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
            _trim.argtypes = [ctypes.c_size_t]
            _trim.restype = ctypes.c_int
    if _trim is None:
        return False
    _trim(0)
    return True
