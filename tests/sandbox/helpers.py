"""Helpers for sandbox tests: tiny child programs, waiting with deadlines, finding survivors."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Callable

import psutil

from executor.sandbox.orphans import MARKER_VAR

PY = sys.executable


def py(code: str, *args: str) -> list[str]:
    """argv running ``code`` (dedented) with this interpreter."""
    return [PY, "-c", textwrap.dedent(code), *args]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def marked_processes(run_name: str) -> list[psutil.Process]:
    """Live, non-zombie processes whose sandbox marker names the run (its work dir's name)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            marker = proc.environ().get(MARKER_VAR, "")
        except psutil.Error:
            continue
        if marker.endswith(":" + run_name):
            found.append(proc)
    return found


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for init counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
