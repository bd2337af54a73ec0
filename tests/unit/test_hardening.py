"""``executor.hardening``: only the process's real environment fills its credential state.

Each test swaps in an empty ``hardening.PROCESS``, so the sets it checks are exact whatever
other tests of the session took or registered.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor import hardening

TOKEN = "gms-token-made-up-for-hardening"
AWS_KEY = "aws-secret-made-up-for-hardening"


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> hardening.ProcessCredentials:
    fresh = hardening.ProcessCredentials()
    monkeypatch.setattr(hardening, "PROCESS", fresh)
    for name in hardening.CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return fresh


def test_a_plain_mapping_loses_its_credentials_and_fills_nothing(state: hardening.ProcessCredentials) -> None:
    environ = {"DATAHUB_GMS_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": AWS_KEY, "HOME": "/home/x"}
    taken = hardening.take_credentials(environ)
    assert taken == {"DATAHUB_GMS_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": AWS_KEY}
    assert environ == {"HOME": "/home/x"}
    assert state == hardening.ProcessCredentials()
    assert hardening.own_credentials() == frozenset() and hardening.host_aws_credentials() == {}


def test_the_real_environment_fills_exactly_what_was_taken(
        state: hardening.ProcessCredentials, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAHUB_GMS_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_KEY)
    assert hardening.take_credentials() == {"DATAHUB_GMS_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": AWS_KEY}
    assert "DATAHUB_GMS_TOKEN" not in os.environ and "AWS_SECRET_ACCESS_KEY" not in os.environ
    assert hardening.own_credentials() == {TOKEN, AWS_KEY}
    assert hardening.host_aws_credentials() == {"AWS_SECRET_ACCESS_KEY": AWS_KEY}


def test_registered_values_and_protected_paths_are_kept_exactly(
        state: hardening.ProcessCredentials, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    hardening.register([TOKEN, "short", None, ""])
    hardening.protect_paths([tmp_path / "config.yaml", None])
    assert hardening.own_credentials() == {TOKEN}, "values under 8 characters are no credentials"
    assert hardening.protected_paths() == (tmp_path / "config.yaml",)
