"""``PoolContext``: what every actor and Task of a pool reads, worked out once."""

from __future__ import annotations

from pathlib import Path

from executor.config import ExecutorConfig, GmsSettings, PoolSettings
from executor.pool.context import PoolContext
from executor.pool.reporter import outbox_of


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
