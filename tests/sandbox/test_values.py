"""Limits, sizes, breach messages, exit-code help and the status a result suggests."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from executor.errors import BadInputError
from executor.sandbox import LimitBreach, SandboxLimits, SandboxResult, describe_exit, parse_size
from executor.sandbox.limits import GiB, MiB, limits_from_settings


@pytest.mark.parametrize(("text", "expected"), [
    ("2147483648", 2 * GiB), ("2G", 2 * 10**9), ("2GiB", 2 * GiB), ("512Mi", 512 * MiB),
    ("512m", 512 * 10**6), ("1.5Gi", int(1.5 * GiB)), (" 64 KiB ", 64 * 1024),
])
def test_parse_size_reads_bytes_and_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1", "0", "2 parsecs", "9" * 400, "1.5"])
def test_parse_size_rejects_bad_input_naming_it(text: str) -> None:
    with pytest.raises(BadInputError, match="EXECUTOR_TASK_MEMORY_LIMIT"):
        parse_size(text, "EXECUTOR_TASK_MEMORY_LIMIT")


def test_breach_message_names_limit_and_measured_value() -> None:
    breach = LimitBreach.of("memory", int(2.1 * GiB), 2 * GiB)
    assert breach.message == "memory 2.1 GiB > limit 2 GiB"
    assert LimitBreach.of("cpu", 12.34, 10).message == "cpu 12.3 s > limit 10 s"
    assert LimitBreach.of("processes", 65, 64).message == "processes 65 > limit 64"


def test_breach_message_adds_decimals_when_rounding_would_hide_the_difference() -> None:
    message = LimitBreach.of("memory", 2 * GiB + 20 * MiB, 2 * GiB).message
    assert message == "memory 2.02 GiB > limit 2 GiB"


def test_task_memory_override_lowers_but_never_passes_the_ceiling() -> None:
    pool = SandboxLimits(memory_bytes=4 * GiB)
    assert pool.with_task_overrides({"EXECUTOR_TASK_MEMORY_LIMIT": str(GiB)}).memory_bytes == GiB
    assert pool.with_task_overrides({"EXECUTOR_TASK_MEMORY_LIMIT": "8Gi"}).memory_bytes == 4 * GiB
    raised = pool.with_task_overrides({"EXECUTOR_TASK_MEMORY_LIMIT": "8Gi"}, ceiling_bytes=16 * GiB)
    assert raised.memory_bytes == 8 * GiB
    assert pool.with_task_overrides({}) is pool


def test_limits_reject_nonsense() -> None:
    with pytest.raises(BadInputError):
        SandboxLimits(memory_bytes=0)
    with pytest.raises(BadInputError):
        SandboxLimits(sample_interval_s=1.0)


def test_limits_from_pool_settings_convert_mib() -> None:
    settings = SimpleNamespace(memory_mb=2048, cpu_seconds=None, wall_seconds=60.0, max_processes=32,
                               output_mb=10, open_files=256, disk_mb=None, kill_grace_s=3.0)
    limits = limits_from_settings(settings)
    assert (limits.memory_bytes, limits.output_bytes, limits.max_processes) == (2 * GiB, 10 * MiB, 32)


def test_sigkill_and_137_are_explained_as_out_of_memory() -> None:
    assert "out of memory" in describe_exit(None, signal.SIGKILL)
    assert "out of memory" in describe_exit(137, None)
    assert "SIGSEGV" in describe_exit(None, signal.SIGSEGV)
    assert describe_exit(1, None) == "Exited with code 1."


def _result(**fields: object) -> SandboxResult:
    base: dict[str, object] = dict(outcome="exited", exit_code=0, signal=None, breach=None, stop_reason=None,
                                   duration_s=1.0, peak_rss_bytes=0, cpu_seconds=0.0, max_processes=1,
                                   output_bytes=0, log_text="")
    base.update(fields)
    return SandboxResult(**base)  # type: ignore[arg-type]


def test_suggested_status_follows_datahub() -> None:
    assert _result().suggested_status == "SUCCESS"
    assert _result(exit_code=1).suggested_status == "FAILURE"
    wall = LimitBreach.of("wall_time", 61, 60)
    assert _result(outcome="limit", breach=wall).suggested_status == "TIMEOUT"
    memory = LimitBreach.of("memory", 3 * GiB, 2 * GiB)
    assert _result(outcome="limit", breach=memory).suggested_status == "FAILURE"
    assert _result(outcome="stopped", stop_reason="KILL").suggested_status == "CANCELLED"
    assert _result(outcome="stopped", stop_status="FAILURE").suggested_status == "FAILURE"
    assert "memory 3 GiB > limit 2 GiB" in _result(outcome="limit", breach=memory).summary()
