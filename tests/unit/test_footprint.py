"""``trim_heap`` gives freed C-heap memory back to the OS (glibc), and is harmless anywhere."""

from __future__ import annotations

import ctypes
import platform

import pytest

from executor.footprint import trim_heap


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_goes_back_to_the_os() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # Many blocks under the mmap threshold: freed, glibc keeps them in its heap for reuse.
    blocks = [libc.malloc(64 * 1024) for _ in range(1024)]
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    keep = libc.malloc(16)  # pins the top of the heap, so free alone cannot shrink it
    for block in blocks:
        libc.free(block)
    before = _rss_kib()
    assert trim_heap()
    after = _rss_kib()
    libc.free(keep)
    assert before - after > 32 * 1024  # most of the 64 MiB went back
