"""The README's local walk-through, run as written: its shell block, unchanged, in bash.

The block runs in a scratch directory that looks like the repository's root (``.venv``,
``examples`` and the shared ``.cache/venvs`` linked in), so every file it makes lands there.
It must end in SUCCESS, stop everything it started, keep the token out of every output, and
leave ``/var/lib/remote-executor`` alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.docs.doccmds import ROOT, block_under

HEADING = "Trying it against a local control plane"
DEFAULT_STATE = Path("/var/lib/remote-executor")


def scratch_checkout(tmp_path: Path) -> Path:
    """A directory with what the walk-through reads from the repository's root."""
    work = tmp_path / "checkout"
    (work / ".cache").mkdir(parents=True)
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "examples").symlink_to(ROOT / "examples")
    (ROOT / ".cache" / "venvs").mkdir(parents=True, exist_ok=True)
    (work / ".cache" / "venvs").symlink_to(ROOT / ".cache" / "venvs")
    return work


def run_block(script: str, cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``bash -e`` on ``script`` in its own process group, which is killed afterwards whatever happened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAHUB_", "REMOTE_EXECUTOR_"))}
    env.update(DATAHUB_TELEMETRY_ENABLED="false", REMOTE_EXECUTOR_OBSERVABILITY_PORT="0")
    proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the walk-through did not finish in {timeout_s}s:\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left running
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.cli
@pytest.mark.slow
def test_the_walkthrough_as_written_ends_in_success(tmp_path: Path) -> None:
    block = block_under(ROOT / "README.md", HEADING)
    work = scratch_checkout(tmp_path)
    state_existed = DEFAULT_STATE.exists()
    done = run_block(block.text, work, timeout_s=600)
    output = done.stdout + done.stderr
    walk = work / ".cache" / "walkthrough"
    logs = {p: p.read_text(errors="replace") for p in walk.rglob("*.log")}
    shown = "\n".join(f"== {p}\n{text[-2000:]}" for p, text in logs.items())
    assert done.returncode == 0, f"{output[-4000:]}\n{shown}"
    final = re.search(r"^SUCCESS in \S+ \((.*)\)$", output, re.MULTILINE)
    assert final is not None, output[-3000:]
    assert "events=12, written=12, failures=0" in final.group(1), "12 aspects were written"
    assert state_existed or not DEFAULT_STATE.exists(), "the walk-through created /var/lib/remote-executor"
    task_logs = list((walk / "state" / "pools" / "default" / "logs").glob("*.log"))
    assert task_logs, "no task log under the walk-through's own state dir"
    token = re.search(r"^Token: (\S+)$", logs[walk / "controlplane.log"], re.MULTILINE)
    assert token is not None
    for path, text in logs.items():
        if path.name != "controlplane.log":  # the stand-in prints its own token on purpose
            assert token.group(1) not in text, f"the token leaked into {path}"
    assert token.group(1) not in output
    # `kill $EXECUTOR && wait $EXECUTOR` under `bash -e`: the executor's drain ended with exit 0.
    assert "executor started with 1 pool(s): default" in logs[walk / "executor.log"]
    assert not (walk / "cp.json").exists(), "the control plane did not stop cleanly"
