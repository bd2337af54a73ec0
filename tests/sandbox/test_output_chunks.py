"""Output handled by chunks: secrets split at every read boundary, invalid UTF-8, bounded tail.

The reader masks whole reads on bytes and carries the tail of each read over to the next, so a
secret that the pipe delivers in two (or three) pieces must come out masked exactly as if the
output had been read in one piece. The unit tests split every form of a secret at every offset;
the sandbox tests make a real recipe write a secret in two writes, with the second one only
after the executor has read the first, and mix in invalid UTF-8.
"""

from __future__ import annotations

import base64
import gc
import json
import weakref
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sandbox import SandboxRun, SandboxSpec, logfile, output, run_log
from executor.sandbox.masking import MASK, MASK_BYTES, Masker, _forms
from executor.sandbox.output import BoundedLog, LineCutter, TaskLogFile, count_lines

from .conftest import RUN_DEADLINE_S
from .helpers import py, wait_until

SECRET = "s3cr3t/Pa$$w0rd+é-token"


def _stream(masker: Masker, pieces: list[bytes]) -> bytes:
    stream = masker.stream()
    return b"".join(stream.feed(piece) for piece in pieces) + stream.finish()


def _stream_via_buffer(masker: Masker, pieces: list[bytes]) -> bytes:
    """The reader's way: each read lands in one reused buffer after the bytes held back."""
    stream = masker.stream()
    buffer = bytearray(max(map(len, pieces), default=0) + stream.keep)
    out = []
    for piece in pieces:
        start = stream.prefill(buffer)
        buffer[start:start + len(piece)] = piece
        out.append(stream.feed_buffer(buffer, start + len(piece)))
    return b"".join(out) + stream.finish()


def _all_forms(secret: str) -> list[bytes]:
    return sorted({form.encode() for form in _forms(secret) if len(form) >= 4})


def test_every_form_split_at_every_offset_is_masked_as_if_read_whole() -> None:
    masker = Masker([SECRET])
    for form in _all_forms(SECRET):
        data = b"before " + form + b" after\nnext line " + form + b"\n"
        whole = masker.mask_bytes(data)
        assert form not in whole and MASK_BYTES in whole
        for cut in range(len(data) + 1):
            assert _stream(masker, [data[:cut], data[cut:]]) == whole, (form, cut)
            assert _stream_via_buffer(masker, [data[:cut], data[cut:]]) == whole, (form, cut)


def test_a_form_in_three_reads_at_every_pair_of_offsets_is_masked() -> None:
    masker = Masker([SECRET])
    form = base64.b64encode(b"xy" + SECRET.encode()).decode().encode()  # base64 at an offset
    data = b"key=" + form + b"\n"
    whole = masker.mask_bytes(data)
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            assert _stream(masker, [data[:first], data[first:second], data[second:]]) == whole


def test_complete_lines_are_never_held_back_waiting_for_the_next_read() -> None:
    stream = Masker([SECRET]).stream()
    assert stream.feed(b"started\n") == b"started\n"
    assert stream.feed(b"partial " + SECRET.encode()[:5]) == b""  # could still become a secret
    assert stream.feed(SECRET.encode()[5:] + b" done\n") == b"partial " + MASK_BYTES + b" done\n"


@settings(max_examples=80, deadline=None)
@given(parts=st.lists(st.sampled_from([b"x", b"\n", b"\xff", "é".encode(), b"abc ", b"0"]), max_size=40),
       where=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
       which=st.sampled_from(_all_forms(SECRET)))
def test_random_chunking_masks_like_one_read(parts: list[bytes], where: list[int], which: bytes) -> None:
    masker = Masker([SECRET])
    data = b"".join(parts[: len(parts) // 2]) + which + b"".join(parts[len(parts) // 2:])
    cuts = sorted({min(w, len(data)) for w in where})
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out = _stream(masker, pieces)
    assert out == masker.mask_bytes(data) == _stream_via_buffer(masker, pieces)
    assert which not in out


def test_many_secrets_in_several_automata_are_all_masked_across_reads() -> None:
    secrets = [f"secret-number-{i:03d}-{'k' * (i % 7)}" for i in range(40)]
    masker = Masker(secrets)
    data = b"".join(b"v=" + base64.b64encode(s.encode()) + b" " + s.encode().hex().encode() + b" "
                    + s.encode() + b"\n" for s in secrets)
    for size in (7, 64, 1000):
        out = _stream(masker, [data[i:i + size] for i in range(0, len(data), size)])
        for secret in secrets:
            for form in (secret.encode(), base64.b64encode(secret.encode()), secret.encode().hex().encode()):
                assert form not in out, (size, form)
        assert out.count(MASK_BYTES) == 3 * len(secrets)


def test_long_lines_are_cut_without_splitting_a_character() -> None:
    cutter = LineCutter(max_bytes=10)
    out = cutter.feed(("ab" + "é" * 10 + "\nshort\n" + "c" * 9 + "é\n").encode())
    text = out.decode("utf-8")  # strict: a cut never leaves half a character
    assert text.splitlines() == ["ab" + "é" * 4 + " [...truncated]", "short", "c" * 9 + " [...truncated]"]


def test_tail_of_chunks_equals_the_tail_of_lines() -> None:
    log = BoundedLog(head_lines=3, tail_lines=5)
    lines = [f"line {i}" for i in range(57)]
    pos, size = 0, 1
    while pos < len(lines):  # chunks of 1, 2, 3... whole lines, as the cutter hands them over
        log.add("".join(f"{line}\n" for line in lines[pos:pos + size]).encode())
        pos, size = pos + size, size % 9 + 1
    assert log.total_lines == 57
    assert log.text().splitlines() == [*lines[:3], "[... 49 line(s) truncated ...]", *lines[-5:]]
    assert log.tail(4).splitlines() == ["[... 53 line(s) truncated ...]", *lines[-4:]]


@given(st.lists(st.integers(min_value=0, max_value=3000), max_size=300), st.integers(0, 40))
@settings(max_examples=60, deadline=None)
def test_count_lines_counts_every_newline_whichever_way_it_counts(lengths: list[int], start: int) -> None:
    data = b"".join(b"y" * n + b"\n" for n in lengths) + b"tail"
    assert count_lines(data, min(start, len(data))) == data.count(b"\n", min(start, len(data)))


def test_count_lines_on_long_lines_then_short_ones() -> None:
    # long lines first (the probe picks the find loop), then a run of short lines and empty ones
    data = (b"L" * 2000 + b"\n") * 20 + b"s\n" * 50_000 + b"\n" * 1000 + b"x" * 70_000
    assert count_lines(data) == 20 + 50_000 + 1000
    assert count_lines(data, 2001) == 19 + 50_000 + 1000
    assert count_lines(b"") == 0 and count_lines(b"no newline") == 0


def test_log_file_caps_on_whole_lines_and_ends_with_the_tail(tmp_path: Path) -> None:
    log_file = TaskLogFile(tmp_path / "task.log", max_bytes=20)
    log_file.write(b"aaaa\nbbbb\ncccc\ndddd\neeee\n")  # 25 bytes: the first four lines fit
    log_file.write(b"ffff\n")
    log_file.close(["eeee", "ffff"])
    assert (tmp_path / "task.log").read_text().splitlines() == [
        "aaaa", "bbbb", "cccc", "dddd", "[... log file capped at 20 bytes; 0 line(s) left out ...]",
        "eeee", "ffff"]



def test_past_the_file_cap_each_read_is_counted_once_for_memory_and_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood past the file's cap is only counted: once per read, not once for the memory's
    tail and again for the file's left-out lines (the count is most of that work per MiB)."""
    calls: list[int] = []

    def counting(data: bytes, start: int = 0) -> int:
        calls.append(start)
        return count_lines(data, start)

    for module in (output, logfile, run_log):
        monkeypatch.setattr(module, "count_lines", counting)
    log = run_log.RunLog()
    log.open_file(tmp_path / "task.log", max_bytes=10)
    log.emit_output(b"aaaa\nbbbb\ncccc\n")  # fills the file: the rest of this read is left out
    log.text()  # waits for the pieces given (the hand-off's thread counts them)
    calls.clear()
    for _ in range(3):
        log.emit_output(b"dddd\neeee\n")
    log.text()  # waits for the pieces given (the hand-off's thread counts them)
    assert len(calls) == 3
    log.close_file()
    lines = (tmp_path / "task.log").read_text().splitlines()
    assert lines[:3] == ["aaaa", "bbbb", "[... log file capped at 10 bytes; 0 line(s) left out ...]"]
    assert lines[3:] == ["cccc", "dddd", "eeee", "dddd", "eeee", "dddd", "eeee"]
    assert log.take_text().splitlines()[-2:] == ["dddd", "eeee"]

SPLIT_WRITER = """
    import base64, json, os, sys, time
    from urllib.parse import quote
    secret = sys.stdin.read()
    raw = secret.encode()
    forms = [raw, base64.b64encode(raw), raw.hex().encode(), raw.hex().upper().encode(),
             quote(secret, safe="").encode(), json.dumps(secret)[1:-1].encode()]
    out = sys.stdout.buffer
    for i, form in enumerate(forms):
        cut = len(form) // 2 + i
        out.write(b"form %d: " % i + form[:cut])
        out.flush()
        deadline = time.monotonic() + 20
        while not os.path.exists(f"go-{i}") and time.monotonic() < deadline:
            time.sleep(0.005)                    # the test creates it once the first half was read
        out.write(form[cut:] + b" \\xff\\xfe" + "é".encode()[:1])
        out.flush()
        while not os.path.exists(f"go-{i}b") and time.monotonic() < deadline:
            time.sleep(0.005)
        out.write("é".encode()[1:] + b" end\\n")
        out.flush()
"""


def _written_before_each_wait(secret: str) -> list[int]:
    """Cumulative bytes the writer has written when it waits for go-<i> and go-<i>b."""
    raw = secret.encode()
    forms = [raw, base64.b64encode(raw), raw.hex().encode(), raw.hex().upper().encode(),
             quote(secret, safe="").encode(), json.dumps(secret)[1:-1].encode()]
    marks, total = [], 0
    for i, form in enumerate(forms):
        cut = len(form) // 2 + i
        total += len(b"form %d: " % i) + cut
        marks.append(total)
        total += len(form) - cut + 4
        marks.append(total)
        total += len("é".encode()) - 1 + 5
    return marks


def test_a_real_recipe_writing_each_form_in_two_reads_with_invalid_utf8(
        make_spec: Callable[..., SandboxSpec], tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "task.log"
    spec = make_spec(py(SPLIT_WRITER), stdin=SECRET.encode(), secrets=[SECRET], log_file=log_path)
    run = SandboxRun(spec)
    run.start()
    try:
        assert run.work_dir is not None
        for i, mark in enumerate(_written_before_each_wait(SECRET)):
            wait_until(lambda mark=mark: run.output_bytes >= mark, 20, f"the executor to read {mark} bytes")
            (run.work_dir / f"go-{i // 2}{'b' if i % 2 else ''}").touch()
        result = run.wait(30)
    finally:
        run.stop("test over", grace_s=0)
        assert run.wait(15) is not None
    assert result is not None and result.outcome == "exited" and result.exit_code == 0
    file_bytes = log_path.read_bytes()
    file_text = file_bytes.decode("utf-8")  # strict: invalid bytes were replaced, é put back together
    for text in (result.log_text, file_text):
        lines = [line for line in text.splitlines() if line.startswith("form ")]
        assert lines == [f"form {i}: {MASK} \ufffd\ufffdé end" for i in range(6)], text
    assert SECRET.encode() not in file_bytes


def test_a_finished_run_is_freed_by_refcounting_not_the_cycle_collector(
        make_spec: Callable[..., SandboxSpec], tmp_path: Path) -> None:
    """A run's output buffers (megabytes after a flood: the tail's chunks, the log text) go
    with its last reference, not at the next full collection, which may come much later."""
    spec = make_spec(py("import sys; sys.stdout.write(('x' * 1023 + '\\n') * 4096)"), secrets=[SECRET],
                     log_file=tmp_path / "logs" / "freed.log")
    freed: list[str] = []
    gc.disable()
    try:
        sandbox = SandboxRun(spec)
        weakref.finalize(sandbox, freed.append, "run")
        sandbox.start()
        result = sandbox.wait(RUN_DEADLINE_S)
        assert result is not None and result.output_bytes == 4096 * 1024
        del sandbox, result
        wait_until(lambda: bool(freed), 30, "the finished run to be freed without gc.collect()")
    finally:
        gc.enable()
