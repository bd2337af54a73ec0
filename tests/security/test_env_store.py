"""The ``env`` secret store serves only what the pool allows (issue 10, point 5).

Attacks tried: ``${AWS_SECRET_ACCESS_KEY}`` (the host's key by its own name), ``${GMS_ALIAS}``
(a variable whose value is the GMS token, as ``gms.token: ${GMS_ALIAS}`` would make), and a
prefix that covers a credential name. The end-to-end form, through a running executor's
SecretResolver and a hostile recipe, is in ``test_privilege.py``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from executor import hardening
from executor.config import EnvStoreSettings, SecretSettings
from executor.errors import NotAllowedError
from executor.hardening import take_credentials
from executor.secrets import EnvStore, build_store, resolve_secrets
from executor.secrets.base import SecretStore

TOKEN = "gms-token-for-the-env-store-test"
HOST_KEY = "host-aws-secret-for-the-env-store-test"
ENV = {"AWS_SECRET_ACCESS_KEY": HOST_KEY, "GMS_ALIAS": TOKEN, "DB_PASSWORD": "hunter22",
       "RECIPE_API_KEY": "api-key-1", "HOME": "/root"}


def store(**allow: tuple[str, ...]) -> EnvStore:
    return EnvStore(ENV, own=lambda: {TOKEN}, **allow)


def test_by_default_nothing_is_served() -> None:
    assert store().get(list(ENV)) == {}
    assert build_store("env", SecretSettings(), None).get(["HOME", "PATH"]) == {}


def test_listed_names_and_prefixes_are_served() -> None:
    allowed = store(names=("DB_PASSWORD",), prefixes=("RECIPE_",))
    assert allowed.get(["DB_PASSWORD", "RECIPE_API_KEY", "HOME", "MISSING"]) == {
        "DB_PASSWORD": "hunter22", "RECIPE_API_KEY": "api-key-1"}


def test_credential_names_are_never_served_even_when_listed() -> None:
    greedy = store(names=("AWS_SECRET_ACCESS_KEY", "DATAHUB_GMS_TOKEN"), prefixes=("AWS_",))
    assert greedy.get(["AWS_SECRET_ACCESS_KEY"]) == {}


def test_an_alias_of_the_token_is_refused_by_value_and_the_error_names_only_the_name() -> None:
    aliasing = store(names=("GMS_ALIAS", "DB_PASSWORD"))
    with pytest.raises(NotAllowedError) as caught:
        aliasing.get(["GMS_ALIAS", "DB_PASSWORD"])
    assert "GMS_ALIAS" in str(caught.value) and TOKEN not in str(caught.value)


def test_an_alias_of_a_credential_still_in_the_environment_is_refused() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": HOST_KEY, "COPY": HOST_KEY}
    with pytest.raises(NotAllowedError, match="COPY"):
        EnvStore(env, names=("COPY",), own=frozenset).get(["COPY"])


def test_credentials_taken_at_start_up_are_refused_under_any_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``run`` does: the host key leaves the environment, yet an alias of it is still refused."""
    monkeypatch.setattr(hardening, "PROCESS", hardening.ProcessCredentials())  # this test's alone
    for name in hardening.CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", HOST_KEY)
    monkeypatch.setenv("SECURITY_TEST_ALIAS", HOST_KEY)
    taken = take_credentials()
    assert taken == {"AWS_SECRET_ACCESS_KEY": HOST_KEY}
    assert hardening.own_credentials() == {HOST_KEY}
    assert hardening.host_aws_credentials() == taken
    import os

    assert "AWS_SECRET_ACCESS_KEY" not in os.environ
    stores: list[SecretStore] = [EnvStore(names=("SECURITY_TEST_ALIAS",))]
    with pytest.raises(NotAllowedError, match="SECURITY_TEST_ALIAS"):
        resolve_secrets(["SECURITY_TEST_ALIAS"], stores)


def test_the_allowlist_is_validated() -> None:
    with pytest.raises(ValidationError):
        EnvStoreSettings(prefixes=("",))
    with pytest.raises(ValidationError):
        EnvStoreSettings(names=("not a name",))
    settings = SecretSettings(env=EnvStoreSettings(names=("DB_PASSWORD",), prefixes=("RECIPE_",)))
    built = build_store("env", settings, None)
    assert isinstance(built, EnvStore) and built.allows("RECIPE_X") and not built.allows("HOME")
