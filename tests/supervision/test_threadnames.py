"""Threads name themselves for Python and for the kernel (``top -H``, ``ps -L``, py-spy)."""

from __future__ import annotations

import threading
from pathlib import Path

from executor.supervision.threadnames import comm_of, name_this_thread


def test_kernel_names_say_role_and_pool_in_15_bytes() -> None:
    assert comm_of("root") == "root"
    assert comm_of("root/pool:default") == "pool:default"
    assert comm_of("root/pool:p1/poller") == "poller@p1"
    assert comm_of("root/pool:default/reporter") == "reporter@defaul"
    assert comm_of("root/pool:p1/runner/task:0a1b2c3d-4e5f") == "task:0a1b2c3d-4"


def test_a_thread_names_itself_for_python_and_the_kernel() -> None:
    seen: dict[str, str] = {}

    def body() -> None:
        name_this_thread("root/pool:p1/poller", comm_of("root/pool:p1/poller"))
        seen["python"] = threading.current_thread().name
        seen["kernel"] = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert seen == {"python": "root/pool:p1/poller", "kernel": "poller@p1"}

