"""Issue 10.2: identifiers from outside never become paths outside our own directories.

Unit tests of ``safe_name`` (no separator, no leading dot, no control character, bounded, no two
ids on one name, even a crafted one), of URN validation at the edge (``decode_message``), of
every place an outside id names a file (task log, work dir, outbox, pool state dir), and of log
pruning and the task log file against planted links. Then for real: raw SQS messages whose
request ids are ``/abs/victim`` and ``../../../../x`` are rejected as poison with a clear log
line and touch no file, and a request whose id is legal but not a plain name (``.hidden...``)
runs with its log under a safe name.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from executor.config import ExecutorConfig, GmsSettings, PoolSettings
from executor.datahub.envelope import (
    URN_MAX_ENCODED_BYTES,
    decode_message,
    encode_envelope,
    url_encoded_length,
)
from executor.errors import BadInputError
from executor.pool.context import PoolContext
from executor.pool.sandboxing import SandboxLauncher
from executor.reporting.outbox import file_stem
from executor.safe_names import MAX_NAME_LENGTH, is_safe_name, safe_name
from executor.sandbox.output import TaskLogFile, prune_task_logs
from executor.sandbox.workdir import create_work_dir
from tests.e2e.direct import send_envelope, write_request
from tests.faults.ledger import wait_until
from tests.security.hostile_cli import PLUGIN
from tests.security.hostile_world import HostileWorld, hostile_world  # noqa: F401 (fixture)

PREFIX = "urn:li:dataHubExecutionRequest:"
HOSTILE_IDS = ["/abs/victim", "../../../../x", ".hidden", "..", ".", "", "a\0b", "tab\there", "esc\x1b[2J",
               "line\nbreak", "é" * 200, "a" * 300, "a/b", "a_b", "a:b", "~", "con", "-rf"]


# -- safe_name --------------------------------------------------------------------------------
@pytest.mark.parametrize("identifier", HOSTILE_IDS)
def test_safe_name_is_a_plain_bounded_name(identifier: str) -> None:
    name = safe_name(identifier)
    assert name and "/" not in name and not name.startswith(".") and name not in (".", "..")
    assert len(name) <= MAX_NAME_LENGTH and name.isprintable() and name.isascii()
    assert is_safe_name(name)


def test_plain_ids_are_kept_and_no_two_ids_share_a_name() -> None:
    request_id = str(uuid.uuid4())
    assert safe_name(request_id) == request_id
    crafted = safe_name("a/b")  # an attacker who knows another id's changed name asks for it
    ids = [*HOSTILE_IDS, request_id, crafted, "a" * MAX_NAME_LENGTH, "a" * (MAX_NAME_LENGTH + 1)]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert safe_name(crafted) != crafted


# -- URN validation at the edge ---------------------------------------------------------------
@pytest.mark.parametrize("request_id", ["/abs/victim", "../../../../x", "a/b", "x..y", "nul\0", "esc\x1b",
                                        "del\x7f", "zero\u200bwidth", "sep\u241f", "sp ace", "(paren)"])
def test_path_shaped_or_control_ids_are_poison(request_id: str) -> None:
    with pytest.raises(BadInputError, match="malformed execution-request urn"):
        decode_message(encode_envelope(PREFIX + request_id, "default"))


def test_urns_longer_than_datahub_allows_are_poison() -> None:
    # DataHub's UrnValidationUtil: URLEncoder.encode(urn).length() <= 512 (UTF-8, Java's rules)
    assert url_encoded_length("a b*~é") == 1 + 1 + 1 + 1 + 3 + 6
    assert url_encoded_length(PREFIX) == len(PREFIX) + 3 * 2  # each ':' becomes %3A
    fits = PREFIX + "a" * (URN_MAX_ENCODED_BYTES - url_encoded_length(PREFIX))
    assert url_encoded_length(fits) == URN_MAX_ENCODED_BYTES
    assert decode_message(encode_envelope(fits, "default")).urn == fits
    for too_long in (fits + "y", PREFIX + "é" * 100):
        with pytest.raises(BadInputError, match="exceeds DataHub's 512"):
            decode_message(encode_envelope(too_long, "default"))


# -- every place an outside id names a file ---------------------------------------------------
def _pool(tmp_path: Path, pool_id: str = "default") -> PoolContext:
    config = ExecutorConfig(gms=GmsSettings(url="http://127.0.0.1:1"), state_dir=tmp_path / "state",
                            pools=(PoolSettings(id=pool_id),))
    return PoolContext(config=config, pool=config.pools[0], token="made-up-token-1", instance_id="test")


@pytest.mark.parametrize("request_id", ["/abs/victim", "../../../../x", ".hidden", "a" * 300])
def test_task_log_work_dir_and_outbox_stay_inside(tmp_path: Path, request_id: str) -> None:
    pool = _pool(tmp_path)
    logs = pool.state_dir / "logs"
    assert SandboxLauncher(pool, PREFIX + request_id)._new_log_file().parent == logs
    work = create_work_dir(tmp_path / "work", request_id)
    assert work.parent == tmp_path / "work" and not work.name.startswith(".")
    assert "/" not in file_stem(request_id) and not file_stem(request_id).startswith(".")


def test_a_pool_id_of_dots_stays_under_the_pools_dir(tmp_path: Path) -> None:
    for pool_id in ("..", ".", "a:b"):
        state = _pool(tmp_path, pool_id).state_dir
        assert state.parent == tmp_path / "state" / "pools" and not state.name.startswith(".")


def test_pruning_touches_only_our_own_regular_log_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    victim = tmp_path / "victim.log"
    victim.write_text("foreign")
    (logs / "linked.log").symlink_to(victim)
    (logs / "a-dir.log").mkdir()
    (logs / ".hidden.log").write_text("not our naming")
    (logs / "notes.txt").write_text("not a log")
    ours = [logs / f"{uuid.uuid4()}.log" for _ in range(3)]
    for path in ours:
        path.write_text("ours")
    assert prune_task_logs(logs, keep_files=0, keep_days=None) == 3
    assert sorted(p.name for p in logs.iterdir()) == [".hidden.log", "a-dir.log", "linked.log", "notes.txt"]
    assert victim.read_text() == "foreign"


def test_pruning_a_logs_dir_that_is_a_link_deletes_nothing(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "old.log").write_text("foreign")
    (tmp_path / "logs").symlink_to(foreign)
    assert prune_task_logs(tmp_path / "logs", keep_files=0, keep_days=None) == 0
    assert (foreign / "old.log").read_text() == "foreign"


@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_the_task_log_never_writes_through_a_planted_link(tmp_path: Path, plant: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("foreign content")
    os.chmod(victim, 0o644)
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "task.log"
    path.symlink_to(victim) if plant == "symlink" else os.link(victim, path)
    log = TaskLogFile(path, 1024)
    log.write_line("our line")
    log.close([])
    assert victim.read_text() == "foreign content" and os.stat(victim).st_mode & 0o777 == 0o644
    assert not path.is_symlink() and path.read_text() == "our line\n"
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path).st_nlink == 1


# -- for real: raw queue messages and a request written to GMS --------------------------------
def test_path_shaped_request_ids_from_the_queue_touch_nothing(hostile_world: HostileWorld) -> None:  # noqa: F811
    world = hostile_world
    victim = world.tmp / "victim.log"
    victim.write_text("foreign content")
    logs = world.harness.pool_dir() / "logs"
    escaped = (logs / "../../../../x.log").resolve()
    mark = "malformed execution-request urn: its id holds '/' or '..' (path-shaped)"
    before = world.harness.logs.text().count(mark)
    recipe = {"source": {"type": PLUGIN, "config": {"attack": "well_behaved"}}, "sink": {"type": "console"}}
    for request_id in (str(world.tmp / "victim"), "../../../../x"):
        # GMS knows them too, so an executor that accepted the message would run them
        write_request(world.cp, PREFIX + request_id, "RUN_INGEST", {"recipe": json.dumps(recipe)})
        send_envelope(world.cp, PREFIX + request_id)
    wait_until(lambda: world.harness.logs.text().count(mark) >= before + 2, 60, "both to be rejected")
    assert victim.read_text() == "foreign content"
    assert not escaped.exists()
    assert not list(world.tmp.glob("victim*.json")) and not (world.tmp / "victim").exists()


def test_a_legal_but_odd_request_id_runs_under_a_safe_log_name(hostile_world: HostileWorld) -> None:  # noqa: F811
    world = hostile_world
    urn = f"{PREFIX}.hidden-{uuid.uuid4()}"
    recipe = {"source": {"type": PLUGIN, "config": {"attack": "well_behaved"}}, "sink": {"type": "console"}}
    write_request(world.cp, urn, "RUN_INGEST", {"recipe": json.dumps(recipe), "version": "bundled"})
    world.urns.append(urn)
    send_envelope(world.cp, urn)
    assert world.harness.wait_terminal(urn)["status"] == "SUCCESS"
    logs = world.harness.pool_dir() / "logs"
    names = [p.name for p in logs.iterdir()]
    assert f"{safe_name(urn.rsplit(':', 1)[-1])}.log" in names
    assert not [n for n in names if n.startswith(".")]
