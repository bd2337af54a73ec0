"""A run's stdin: written on the caller's thread when the pipe takes it at once, the rest by a
thread of its own; the process gets every byte in either case, and one that never reads is
no error."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from executor.sandbox.streams import StdinWriter

DIGEST = "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest(), flush=True)"


def digest_of_input(data: bytes) -> tuple[str, StdinWriter]:
    proc = subprocess.Popen([sys.executable, "-c", DIGEST], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    writer = StdinWriter(proc.stdin, data, "stdin-test")
    try:
        writer.start()
        out = proc.stdout.read().decode().strip()
        assert writer.join(30), "the writer ends once the process has read everything"
    finally:
        writer.stop()
        proc.wait(30)
        proc.stdout.close()
    return out, writer


def test_an_input_the_pipe_takes_at_once_needs_no_thread() -> None:
    data = b'{"__recipe_yaml__": "source: {}", "__secrets__": {"S": "a-secret-value"}}'
    out, writer = digest_of_input(data)
    assert out == hashlib.sha256(data).hexdigest()
    assert not writer.started, "written on the caller's thread"


def test_an_input_larger_than_the_pipe_arrives_whole() -> None:
    data = bytes(range(256)) * (4 * 4096 + 1)  # 4 MiB + 256 B: more than any pipe holds
    out, writer = digest_of_input(data)
    assert out == hashlib.sha256(data).hexdigest()
    assert writer.started, "the rest went on the writer's thread"


def test_a_process_that_closed_its_stdin_is_no_error() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import os; os.close(0); input = None"],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.wait(30)
    writer = StdinWriter(proc.stdin, b"x" * 100, "stdin-closed")
    writer.start()  # EPIPE: the process's business, not the run's
    assert writer.join(5) and proc.stdin.closed
