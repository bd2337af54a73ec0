"""``PoolContext``: what every actor and Task of a pool reads, worked out once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.config import ExecutorConfig, GmsSettings, PoolSettings
from executor.pool.context import PoolContext
from executor.pool.reporter import outbox_of
from executor.pool.run_specs import NO_HOME, plain_env, run_spec
from executor.sandbox import build_env
from executor.sandbox.venvs import ResolvedVenv


def test_the_state_dir_and_the_outbox_are_worked_out_once_per_pool(tmp_path: Path) -> None:
    """A Task asks for its pool's state dir about five times and for the outbox twice: the
    same objects each time (no ``safe_name`` and path joins per call), under the pool's id."""
    pool = PoolSettings(id="default")
    config = ExecutorConfig(gms=GmsSettings(url="http://127.0.0.1:1"), state_dir=tmp_path, pools=(pool,))
    ctx = PoolContext(config=config, pool=pool, token="made-up-gms-token", instance_id="test")
    assert ctx.state_dir is ctx.state_dir
    assert ctx.state_dir == tmp_path / "pools" / "default"
    assert outbox_of(ctx) is outbox_of(ctx)
    assert outbox_of(ctx).directory == ctx.state_dir / "outbox"


def test_a_plain_run_s_environment_is_built_once_per_pool_and_is_read_only(tmp_path: Path) -> None:
    """A warm spare's spec and its adopter's share one environment (built from the allowlist,
    the pool's defaults on top), which nobody can change under the other; a request with
    ``extra_env_vars`` gets one of its own, built for it."""
    pool = PoolSettings(id="default", env={"POOL_ONLY": "p"})
    config = ExecutorConfig(gms=GmsSettings(url="http://127.0.0.1:1"), state_dir=tmp_path, pools=(pool,))
    ctx = PoolContext(config=config, pool=pool, token="made-up-gms-token", instance_id="test")
    plain = plain_env(ctx)
    assert plain is plain_env(ctx)
    assert dict(plain) == build_env(os.environ, pool.env, {}, NO_HOME)
    assert plain["POOL_ONLY"] == "p"
    with pytest.raises(TypeError):
        plain["POOL_ONLY"] = "changed"  # type: ignore[index]
    venv = ResolvedVenv(kind="bundled", path=tmp_path / "venv", datahub=tmp_path / "venv" / "bin" / "datahub")
    identity = (None, tmp_path / "work")
    assert run_spec(ctx, identity, venv, "t1", None).env is plain
    own = run_spec(ctx, identity, venv, "t2", None, extra_env={"TASK_SETTING": "its own"}).env
    assert own["TASK_SETTING"] == "its own" and own["POOL_ONLY"] == "p"
    assert "TASK_SETTING" not in plain
