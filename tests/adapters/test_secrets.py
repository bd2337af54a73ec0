"""Secret references, ordered resolution, and the env, file and DataHub stores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from executor.errors import BadInputError, ConfigError, MissingSecretError
from executor.secrets import (
    AwsSecretsManagerStore,
    DataHubStore,
    EnvStore,
    FileStore,
    SecretStore,
    build_store,
    resolve_secrets,
    secret_references,
)


class DictStore:
    """An in-process store behind the SecretStore interface."""

    def __init__(self, name: str, values: dict[str, str]) -> None:
        self.name = name
        self.values = values
        self.asked: list[list[str]] = []

    def get(self, names: Sequence[str]) -> dict[str, str]:
        self.asked.append(list(names))
        return {n: self.values[n] for n in names if n in self.values}


def test_references_follow_datahubs_pattern() -> None:
    recipe = '{"a": "${DB_PASS}", "b": "${VAR:-fb}", "c": "$PLAIN", "d": "x${T_1}y${DB_PASS}", "e": "${}"}'

    assert secret_references(recipe) == {"DB_PASS", "T_1"}


def test_later_store_wins() -> None:
    first, second = DictStore("a", {"X": "1", "Y": "2"}), DictStore("b", {"Y": "3"})
    assert resolve_secrets(["X", "Y", "X"], [first, second]) == {"X": "1", "Y": "3"}
    assert first.asked == [["X", "Y"]]


def test_missing_names_only_the_missing() -> None:
    with pytest.raises(MissingSecretError) as info:
        resolve_secrets(["HAVE", "NOPE", "ALSO_NOPE"], [DictStore("a", {"HAVE": "value-of-have"})])
    assert info.value.names == ["ALSO_NOPE", "NOPE"]
    assert "value-of-have" not in str(info.value) and "HAVE," not in str(info.value)


def test_nothing_to_resolve_asks_no_store() -> None:
    store = DictStore("a", {})
    assert resolve_secrets([], [store]) == {}
    assert store.asked == []


def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    stores = [EnvStore({}), FileStore(tmp_path), DataHubStore(SimpleNamespace(get_secret_values=dict)),
              AwsSecretsManagerStore("us-east-1", client=object())]
    assert all(isinstance(s, SecretStore) for s in stores)


def test_env_store_never_gives_out_the_gms_token() -> None:
    env = {"A": "1", "DATAHUB_GMS_TOKEN": "tok", "DATAHUB_GMS_URL": "http://gms"}
    store = EnvStore(env, names=("A", "B", "DATAHUB_GMS_TOKEN"), prefixes=("DATAHUB_",))
    assert store.get(["A", "B", "DATAHUB_GMS_TOKEN", "DATAHUB_GMS_URL"]) == {
        "A": "1", "DATAHUB_GMS_URL": "http://gms"}


def test_env_store_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTER_TEST_SECRET", "s3cret")
    store = EnvStore(names=("ADAPTER_TEST_SECRET",))
    assert store.get(["ADAPTER_TEST_SECRET"]) == {"ADAPTER_TEST_SECRET": "s3cret"}


def kubernetes_mount(base: Path, secrets: dict[str, str]) -> None:
    """The layout kubelet writes: NAME -> ..data/NAME, ..data -> ..<timestamp>/."""
    version = base / "..2030_01_01_00_00_00.000000001"
    version.mkdir(parents=True)
    for name, value in secrets.items():
        (version / name).write_text(value)
    (base / "..data").symlink_to(version.name)
    for name in secrets:
        (base / name).symlink_to(Path("..data") / name)


def test_file_store_reads_a_kubernetes_mount(tmp_path: Path) -> None:
    values = {"DB_PASS": "pa55\n", "MULTI": "line1\nline2\n\n", "CRLF": "v\r\n", "RAW": "x"}
    kubernetes_mount(tmp_path, values)
    store = FileStore(tmp_path)
    assert store.get(["DB_PASS", "MULTI", "CRLF", "RAW", "ABSENT", "..data"]) == {
        "DB_PASS": "pa55", "MULTI": "line1\nline2\n", "CRLF": "v", "RAW": "x"}


def test_file_store_ignores_directories_and_dotfiles(tmp_path: Path) -> None:
    (tmp_path / "DIR").mkdir()
    (tmp_path / ".hidden").write_text("h")
    assert FileStore(tmp_path).get(["DIR", ".hidden"]) == {}
    assert FileStore(tmp_path / "missing").get(["X"]) == {}


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", ".", "a\\b", ""])
def test_file_store_refuses_path_like_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadInputError):
        FileStore(tmp_path).get([name])


def test_file_store_refuses_huge_and_binary_files(tmp_path: Path) -> None:
    (tmp_path / "BIG").write_bytes(b"x" * (1024 * 1024 + 1))
    (tmp_path / "BIN").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BadInputError, match="BIG"):
        FileStore(tmp_path).get(["BIG"])
    with pytest.raises(BadInputError, match="not UTF-8"):
        FileStore(tmp_path).get(["BIN"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_file_store_unreadable_file_is_clear(tmp_path: Path) -> None:
    path = tmp_path / "LOCKED"
    path.write_text("x")
    path.chmod(0)
    with pytest.raises(BadInputError, match="LOCKED"):
        FileStore(tmp_path).get(["LOCKED"])


def test_datahub_store_passes_names_and_keeps_omissions() -> None:
    asked: list[list[str]] = []

    def get_secret_values(names: Sequence[str]) -> dict[str, str]:
        asked.append(list(names))
        return {"KNOWN": "v"}

    store = DataHubStore(SimpleNamespace(get_secret_values=get_secret_values))
    assert store.get(["KNOWN", "UNKNOWN"]) == {"KNOWN": "v"}
    assert store.get([]) == {} and asked == [["KNOWN", "UNKNOWN"]]


def test_build_store_kinds(tmp_path: Path) -> None:
    settings = SimpleNamespace(file_dir=tmp_path, aws=SimpleNamespace(region="us-east-1", prefix="dh/"))
    gms = SimpleNamespace(get_secret_values=dict)
    assert isinstance(build_store("env", settings, gms), EnvStore)
    file_store = build_store("file", settings, gms)
    assert isinstance(file_store, FileStore) and file_store.basedir == tmp_path
    assert isinstance(build_store("datahub", settings, gms), DataHubStore)
    aws = build_store("aws-secrets-manager", settings, None)
    assert isinstance(aws, AwsSecretsManagerStore) and aws.prefix == "dh/"
    with pytest.raises(ConfigError, match="vault"):
        build_store("vault", settings, gms)
    with pytest.raises(ConfigError):
        build_store("datahub", settings, None)


def test_build_store_accepts_the_real_config_model(tmp_path: Path) -> None:
    from executor.config import SecretSettings

    settings = SecretSettings(stores=("env", "file"), file_dir=tmp_path)
    stores = [build_store(kind, settings, None) for kind in settings.stores]
    assert [s.name for s in stores] == ["env", "file"]
