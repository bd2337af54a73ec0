"""Giving the C heap's free memory back to the OS once the executor is at rest.

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
