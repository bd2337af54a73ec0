"""``trim_heap`` gives freed C-heap memory back to the OS and ``limit_malloc_arenas`` caps glibc's
arenas (both glibc), and both are harmless anywhere."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from executor.footprint import ARENAS as CAP
from executor.footprint import trim_heap

SCENARIO = textwrap.dedent("""
    import ctypes
    from executor.footprint import ARENAS, trim_heap

    def rss_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # Blocks under the mmap threshold, then one that pins the top of the heap: once the
    # blocks are freed, glibc keeps their pages for reuse, as after a task's run.
    blocks = [libc.malloc(64 * 1024) for _ in range(1024)]
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    keep = libc.malloc(64 * 1024)
    for block in blocks:
        libc.free(block)
    before = rss_kib()
    trimmed = trim_heap()
    print(trimmed, before - rss_kib())
""")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_goes_back_to_the_os() -> None:
    # A fresh interpreter, so the heap holds only what the scenario put there.
    out = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) > 32 * 1024  # most of the 64 MiB went back


def test_trimming_twice_is_harmless() -> None:
    assert trim_heap() == trim_heap()


ARENAS = textwrap.dedent("""
    import ctypes, sys, threading
    from executor.footprint import limit_malloc_arenas

    if sys.argv[1] == "capped":
        assert limit_malloc_arenas()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    start = threading.Barrier(8)

    def work():  # ctypes calls run without the GIL: the threads contend for the heap at once
        start.wait()
        for _ in range(3000):
            libc.free(libc.malloc(1024))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
""")


def _arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, timeout=60,
                          check=True)
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="M_ARENA_MAX is glibc's")
def test_threads_that_contend_share_the_capped_arenas() -> None:
    assert _arenas("free") > 2  # the scenario does make glibc add arenas
    assert _arenas("capped") == CAP
