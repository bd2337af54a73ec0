"""Venv policy (bundled, native, locked, dynamic) and the dynamic venv cache (one build, LRU)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from executor.errors import BadInputError, NotAllowedError
from executor.sandbox.venv_cache import VenvCache, cache_key
from executor.sandbox.venvs import VenvPolicy, VenvRequest, find_bundled_venv, resolve_venv

from .venv_fakes import FakeBuilder


def make_bundled(root: Path, plugin: str) -> Path:
    venv = root / f"{plugin}-bundled"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "datahub"):
        (venv / "bin" / name).write_text("#!/bin/sh\n")
    return venv


def test_bundled_version_uses_root_plugin_bundled(tmp_path: Path) -> None:
    venv = make_bundled(tmp_path, "snowflake")
    resolved = resolve_venv(VenvRequest("snowflake", "bundled"), VenvPolicy(bundled_root=tmp_path))
    assert (resolved.kind, resolved.path, resolved.datahub) == ("bundled", venv, venv / "bin" / "datahub")
    assert resolved.ingest_argv(debug=True) == [str(venv / "bin" / "datahub"), "--debug", "ingest", "run",
                                                "-c", "-", "--report-to", "{report_file}"]


def test_missing_bundled_venv_error_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as caught:
        find_bundled_venv(tmp_path, "mysql")
    message = str(caught.value)
    assert str(tmp_path / "mysql-bundled") in message and "bin/python" in message
    assert "remote-executor venv build --plugin mysql" in message


@pytest.mark.parametrize("version", ["1.7.0.17", "latest", "native"])
def test_locked_mode_refuses_anything_but_bundled_and_never_builds(tmp_path: Path, version: str) -> None:
    builder = FakeBuilder()
    policy = VenvPolicy(bundled_root=tmp_path, dependency_resolution=False, cache_dir=tmp_path / "cache")
    with pytest.raises(NotAllowedError, match="INGESTION_DEPENDENCY_RESOLUTION_ENABLED=false"):
        resolve_venv(VenvRequest("file", version), policy, builder)
    assert builder.builds == []


def test_native_uses_the_cli_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    datahub = tmp_path / "bin" / "datahub"
    datahub.write_text("#!/bin/sh\n")
    datahub.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    resolved = resolve_venv(VenvRequest("file", "native"), VenvPolicy())
    assert (resolved.kind, resolved.datahub) == ("native", datahub)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BadInputError, match="PATH"):
        resolve_venv(VenvRequest("file", "native"), VenvPolicy())


def test_bad_names_are_rejected() -> None:
    with pytest.raises(BadInputError):
        VenvRequest("../etc", "bundled")
    with pytest.raises(BadInputError):
        VenvRequest("file", "1.0; rm -rf /")


def test_dynamic_venv_is_built_once_then_reused(tmp_path: Path) -> None:
    builder = FakeBuilder()
    policy = VenvPolicy(cache_dir=tmp_path / "cache")
    first = resolve_venv(VenvRequest("file", "1.2.3"), policy, builder)
    first.release()
    second = resolve_venv(VenvRequest("file", "1.2.3"), policy, builder)
    second.release()
    assert builder.builds == ["1.2.3"]
    assert first.path == second.path and first.kind == "dynamic"
    assert (first.datahub).exists()


def test_two_threads_asking_for_the_same_venv_cause_one_build(tmp_path: Path) -> None:
    gate = threading.Event()
    builder = FakeBuilder(gate=gate)
    cache = VenvCache(tmp_path / "cache", max_bytes=2**30)
    second_waits = threading.Event()
    paths: list[Path] = []

    def ask(progress: object) -> None:
        with cache.acquire(VenvRequest("file", "1.2.3"), builder, progress) as lease:  # type: ignore[arg-type]
            paths.append(lease.path)

    first = threading.Thread(target=ask, args=(lambda line: None,))
    first.start()
    assert builder.started.wait(10)
    second = threading.Thread(target=ask, args=(
        lambda line: second_waits.set() if line.startswith("waiting for another build") else None,))
    second.start()
    assert second_waits.wait(10), "the second thread should wait on the build lock"
    gate.set()
    first.join(20)
    second.join(20)
    assert not first.is_alive() and not second.is_alive()
    assert builder.builds == ["1.2.3"]
    assert len(paths) == 2 and paths[0] == paths[1]


def test_failed_build_leaves_nothing_published(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path / "cache", max_bytes=2**30)
    with pytest.raises(RuntimeError, match="fake build failed"):
        cache.acquire(VenvRequest("file", "1.2.3"), FakeBuilder(fail=True))
    assert cache.entries() == [] and list((tmp_path / "cache" / "store").iterdir()) == []
    with cache.acquire(VenvRequest("file", "1.2.3"), FakeBuilder()) as lease:
        assert lease.path.is_dir()


def test_lru_eviction_past_the_cap_spares_venvs_in_use(tmp_path: Path) -> None:
    builder = FakeBuilder(payload_bytes=2**20)
    cache = VenvCache(tmp_path / "cache", max_bytes=int(2.5 * 2**20))
    in_use = cache.acquire(VenvRequest("file", "1.0.0"), builder)
    cache.acquire(VenvRequest("file", "2.0.0"), builder).release()
    cache.acquire(VenvRequest("file", "3.0.0"), builder).release()
    kept = {key for _, _, key, _ in cache.entries()}
    assert cache_key(VenvRequest("file", "1.0.0")) in kept, "in use: never evicted"
    assert cache_key(VenvRequest("file", "3.0.0")) in kept, "just built: kept"
    assert cache_key(VenvRequest("file", "2.0.0")) not in kept, "least recently used and free: evicted"
    in_use.release()
    smaller = VenvCache(tmp_path / "cache", max_bytes=int(1.5 * 2**20))
    assert smaller.evict() == [cache_key(VenvRequest("file", "1.0.0"))], "now free, and the oldest"


def test_cache_keys_differ_by_request_and_latest_by_day() -> None:
    base = VenvRequest("file", "1.0.0")
    assert cache_key(base) != cache_key(VenvRequest("file", "1.0.0", extra_plugins=("s3",)))
    assert cache_key(base) != cache_key(VenvRequest("file", "1.0.0", extra_requirements=("x==1",)))
    latest = VenvRequest("file", "latest")
    assert cache_key(latest, "2026-01-01") != cache_key(latest, "2026-01-02")
    assert cache_key(base).startswith("file-")
