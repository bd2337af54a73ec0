"""Two cheap checks on every task's path: the command line's secret scan and the warm spare's key."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from executor.pool.warm import spare_key
from executor.sandbox.held_input import secret_in_argv
from executor.sandbox.spec import SandboxSpec


@pytest.mark.parametrize(("secrets", "argv", "found"), [
    (["s3cret"], ["prog", "--password=s3cret"], True),
    (["s3cret"], ["prog", "s3c", "ret"], False),  # the arguments are searched joined, never across two
    (["ret\0prog"], ["ret", "prog"], False),  # a secret with a NUL: argument by argument
    (["s3c\0ret"], ["prog", "x-s3c\0ret-x"], True),
    (["abc"], ["prog", "abc"], False),  # too short to be masked, so not refused either
    (["", "long-enough"], ["prog"], False),
])
def test_a_secret_is_found_only_within_one_argument(secrets: list[str], argv: list[str], found: bool) -> None:
    assert secret_in_argv(secrets, argv) is found


def test_the_spare_key_is_the_spec_without_what_names_the_task() -> None:
    spec = SandboxSpec(argv=["prog", "-c"], secrets=("credential-1",), log_file=Path("/logs/t1.log"),
                       task_id="t1", report_file="report.json")
    key = spare_key(spec)
    assert key == replace(spec, task_id="", log_file=None, secrets=())
    assert (key.task_id, key.log_file, key.secrets) == ("", None, ())
    assert (spec.task_id, spec.log_file, spec.secrets) == ("t1", Path("/logs/t1.log"), ("credential-1",))
    assert key != spare_key(replace(spec, report_file=None))  # any other field still tells two runs apart
    assert key == spare_key(replace(spec, task_id="t2", log_file=Path("/logs/t2.log"), secrets=("other-1",)))
