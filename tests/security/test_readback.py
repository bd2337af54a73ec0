"""Issue 10.1: what a recipe leaves in its work dir is read back without following or blocking.

Unit tests of ``executor.sandbox.readback.read_back`` on every kind of planted file, then the
attacks for real: the hostile stand-in CLI (``hostile_cli.py``) replaces its ``--report-to``
file with a symlink to ``/proc/self/environ`` (the executor's environment), a symlink and a
hard link to a file holding a secret, a FIFO and a directory, in a real pool run against the
local control plane. Each run must end promptly, deliver no structured report, say why in the
log, and leave the secret nowhere.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from executor.sandbox.readback import RefusedFile, read_back
from executor.sandbox.workdir import create_work_dir, remove_work_dir
from tests.fixtures.spares import assert_no_work_dir_left
from tests.security.hostile_world import HostileWorld, hostile_world, leaks  # noqa: F401 (fixture)

CAP = 4096


@pytest.fixture
def work(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A file outside the work dir holding a secret."""
    path = tmp_path / "foreign-secret"
    path.write_text("foreign-canary-" + secrets.token_hex(8))
    return path


@pytest.fixture
def no_wait() -> Iterator[ThreadPoolExecutor]:
    """Runs a read on a thread so a read that blocks fails the test instead of hanging it."""
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=False)


def refused(work: Path, name: str = "report.json", cap: int = CAP) -> str:
    with pytest.raises(RefusedFile) as caught:
        read_back(work, name, cap)
    return str(caught.value)


# -- the primitive ---------------------------------------------------------------------------
def test_a_plain_file_is_read_and_a_missing_one_is_none(work: Path) -> None:
    (work / "report.json").write_text('{"ok": 1}')
    assert read_back(work, "report.json", CAP) == b'{"ok": 1}'
    assert read_back(work, "absent.json", CAP) is None


def test_a_symlink_is_refused_whatever_it_points_at(work: Path, foreign: Path) -> None:
    (work / "report.json").symlink_to(foreign)
    assert "symbolic link" in refused(work)
    (work / "environ").symlink_to("/proc/self/environ")
    assert "symbolic link" in refused(work, "environ")
    (work / "dangling").symlink_to(work / "nowhere")
    assert "symbolic link" in refused(work, "dangling")


def test_a_hard_link_to_a_foreign_file_is_refused(work: Path, foreign: Path) -> None:
    os.link(foreign, work / "report.json")
    assert "hard links" in refused(work)


def test_a_fifo_is_refused_without_blocking(work: Path, no_wait: ThreadPoolExecutor) -> None:
    os.mkfifo(work / "report.json", 0o600)
    future = no_wait.submit(read_back, work, "report.json", CAP)
    try:
        with pytest.raises(RefusedFile, match="FIFO"):
            future.result(timeout=20)
    finally:
        if not future.done():  # a regression that blocks: unblock it so the thread ends
            with open(work / "report.json", "w"):
                pass


def test_directories_sockets_and_devices_are_refused(work: Path) -> None:
    (work / "dir").mkdir()
    assert "directory" in refused(work, "dir")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(work / "sock"))
        assert "socket" in refused(work, "sock")
    finally:
        server.close()
    if os.geteuid() == 0:  # only root may make device nodes (a root recipe could, too)
        os.mknod(work / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        assert "device" in refused(work, "null")


def test_the_size_is_capped(work: Path) -> None:
    (work / "report.json").write_bytes(b"x" * CAP)
    assert read_back(work, "report.json", CAP) == b"x" * CAP
    (work / "report.json").write_bytes(b"x" * (CAP + 1))
    assert "larger than" in refused(work)


def test_a_work_dir_replaced_by_a_link_and_path_shaped_names_are_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "report.json").write_text("not ours")
    (tmp_path / "linked-work").symlink_to(elsewhere)
    assert "symbolic link" in refused(tmp_path / "linked-work")
    for name in ("../report.json", "/etc/passwd", "..", ".", ""):
        assert "plain file name" in refused(elsewhere, name)


# -- the attacks, for real, through a pool run ------------------------------------------------
def _refused_run(world: HostileWorld, attack: str, why: str, **config: str) -> dict[str, object]:
    """Run ``attack``; the run must succeed (the CLI exits 0) without a structured report."""
    result = world.run(attack, **config)
    assert result["status"] == "SUCCESS", result["report"]
    assert "structuredReport" not in result
    assert f"[sandbox] report file refused and left out: {why}" in str(result["report"])
    return result


def test_report_symlinked_to_the_executors_environment(hostile_world: HostileWorld) -> None:  # noqa: F811
    environ = Path("/proc/self/environ").read_bytes().split(b"\0")
    _refused_run(hostile_world, "report_symlink_environ", "it is a symbolic link")
    written = hostile_world.everything_written()
    shown = [e.decode() for e in environ if b"=" in e and len(e.split(b"=", 1)[1]) >= 24]
    assert not [e for e in shown if e in written], "the executor's environment reached an output"


def test_report_symlinked_or_hard_linked_to_a_secret_file(hostile_world: HostileWorld) -> None:  # noqa: F811
    secret_file = hostile_world.tmp / "operator-secret.txt"
    canary = "operator-canary-" + secrets.token_hex(12)
    secret_file.write_text(canary)
    _refused_run(hostile_world, "report_symlink_secret", "it is a symbolic link", target=str(secret_file))
    _refused_run(hostile_world, "report_hardlink", "it has 2 hard links", target=str(secret_file))
    assert secret_file.read_text() == canary, "the target was changed"
    assert not leaks(hostile_world.everything_written(), [canary])


def test_a_fifo_or_directory_report_ends_the_run_promptly(hostile_world: HostileWorld) -> None:  # noqa: F811
    _refused_run(hostile_world, "report_fifo", "it is a FIFO, not a regular file")
    _refused_run(hostile_world, "report_directory", "it is a directory, not a regular file")
    work = hostile_world.harness.pool_dir() / "work"
    assert_no_work_dir_left(work, hostile_world.harness.service.pools)


def test_a_well_behaved_report_still_arrives(hostile_world: HostileWorld) -> None:  # noqa: F811
    result = hostile_world.run("well_behaved")
    assert result["status"] == "SUCCESS"
    structured = result["structuredReport"]
    assert isinstance(structured, dict) and '"records": 1' in structured["serializedValue"]


def test_removing_a_work_dir_never_follows_planted_links(tmp_path: Path) -> None:
    work = create_work_dir(tmp_path / "work", "task")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    (foreign / "keep").write_text("foreign")
    (work / "link").symlink_to(foreign)
    locked = work / "locked"  # not writable: removal needs the chmod-and-retry path (non-root)
    locked.mkdir()
    (locked / "file").write_text("ours")
    (locked / "to-foreign").symlink_to(foreign)
    os.chmod(locked, 0o500)
    assert remove_work_dir(work) and not work.exists()
    assert (foreign / "keep").read_text() == "foreign" and stat.S_IMODE(foreign.stat().st_mode) == 0o755
