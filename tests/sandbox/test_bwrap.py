"""``isolation="bwrap"``: read-only host, private /proc and /tmp, hidden paths, limits still enforced."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.sandbox import SandboxLimits

from .conftest import RunFactory
from .helpers import py

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def state_outside_tmp() -> Iterator[Path]:
    """A directory outside /tmp (bwrap gives /tmp a fresh tmpfs anyway), in the git-ignored cache."""
    path = REPO / ".cache" / f"bwrap-test-{os.getpid()}"
    path.mkdir(parents=True)
    (path / "outbox.json").write_text("executor state")
    yield path
    shutil.rmtree(path)


def test_recipe_sees_a_read_only_host_and_none_of_the_executor(run_sandbox: RunFactory,
                                                               state_outside_tmp: Path) -> None:
    hidden = state_outside_tmp
    child = f"""
        import os
        print("executor visible:", os.path.exists("/proc/{os.getpid()}/environ"))
        hidden = {str(hidden)!r}
        print("hidden entries:", os.listdir(hidden) if os.path.isdir(hidden) else [])
        try:
            open("/usr/remote-executor-test", "w")
            print("host writable: True")
        except OSError:
            print("host writable: False")
        with open("result.txt", "w") as out:
            out.write("work dir is writable")
        print("work dir writable:", open("result.txt").read() == "work dir is writable")
    """
    _, result = run_sandbox(py(child), isolation="bwrap", hide_paths=[hidden])
    assert result.outcome == "exited" and result.exit_code == 0, result.log_text
    for expected in ("executor visible: False", "hidden entries: []", "host writable: False",
                     "work dir writable: True"):
        assert expected in result.log_text
    assert (hidden / "outbox.json").exists() and not Path("/usr/remote-executor-test").exists()


def test_limits_still_apply_inside_bwrap(run_sandbox: RunFactory) -> None:
    limits = SandboxLimits(wall_seconds=0.5, kill_grace_s=1.0, sample_interval_s=0.05)
    _, result = run_sandbox(py("import time; time.sleep(20)"), isolation="bwrap", limits=limits)
    assert result.outcome == "limit" and result.breach is not None and result.breach.limit == "wall_time"
