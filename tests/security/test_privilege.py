"""A hostile recipe attacks a real executor process (issue 10, points 3, 5 and 6).

Each case starts ``remote-executor run`` (root, or a throwaway non-root user), a concurrent
"victim" task that keeps a secret in its work dir, and then the hostile stand-in CLI
(``hostile_probe.py``), which tries to read the executor's /proc files, config, outbox, outbox
key, another pool's logs and the victim's work dir, and to forge a SUCCESS for a request of a
pool nobody serves. The executor is then restarted, which flushes every outbox: a forged
record that were accepted would be delivered now. Cases:

- root executor, ``process`` isolation, recipes ``run_as`` another user;
- root executor, ``bwrap``, with and without ``run_as``;
- non-root executor, ``bwrap``;
- non-root executor, ``process``, recipe as the same uid: the documented weak case, where only
  non-dumpability and the token-bound outbox MAC protect (docs/security.md says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.security.bubblewrap import bubblewrap
from tests.security.privilege_world import SecurityWorld, Users, throwaway_users, wait_until

__all__ = ["bubblewrap", "throwaway_users"]

STATE_READS = ("config_file", "key_file", "outbox_list", "other_pool_logs")
TASK_READS = ("sibling_work_dir", "proc_cwd_of_others")
CASES = [
    pytest.param(("root", "process", True), id="root-process-run_as"),
    pytest.param(("root", "bwrap", False), id="root-bwrap"),
    pytest.param(("root", "bwrap", True), id="root-bwrap-run_as"),
    pytest.param(("user", "bwrap", False), id="nonroot-bwrap"),
    pytest.param(("user", "process", False), id="nonroot-process-same-uid"),
]


@pytest.fixture
def world(request: pytest.FixtureRequest, throwaway_users: Users) -> Iterator[SecurityWorld]:
    who, isolation, run_as = request.param
    if isolation == "bwrap":
        request.getfixturevalue("bubblewrap")  # installed here if the machine allows, else a skip
    made = SecurityWorld(executor_user=throwaway_users.executor if who == "user" else None,
                         recipe_user=throwaway_users.recipe if run_as else None, isolation=isolation)
    try:
        yield made
    finally:
        made.close()


def findings_of(world: SecurityWorld, urn: str) -> dict[str, Any]:
    result = world.wait_terminal(urn)
    line = next((x for x in str(result.get("report", "")).splitlines() if "HOSTILE-FINDINGS " in x), None)
    assert line is not None, f"the hostile recipe printed no findings: {result}"
    return dict(json.loads(line.split("HOSTILE-FINDINGS ", 1)[1]))


def attack_config(world: SecurityWorld, victim_urn: str, secret: str) -> dict[str, Any]:
    state = world.state / "pools"
    return {
        "token_sha256": hashlib.sha256(world.token.encode()).hexdigest(),
        "executor_pid": world.executor_pid,
        "config_file": str(world.config_file),
        "key_file": str(state / "other" / "outbox.key"),
        "outbox": str(state / "other" / "outbox"),
        "other_logs": str(state / "other" / "logs"),
        "victim_urn": victim_urn, "victim_pool": "other", "victim_secret": secret,
    }


def victim_work_dir_ready(world: SecurityWorld, secret: str) -> bool:
    for path in world.base.rglob("secret.txt"):
        try:
            if path.read_text() == secret:
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("world", CASES, indirect=True)
def test_a_hostile_recipe_gets_nothing_of_the_executor(world: SecurityWorld) -> None:
    world.start()
    other_logs = world.state / "pools" / "other" / "logs"
    other_logs.mkdir(parents=True, exist_ok=True)
    if world.executor_user is not None:  # the executor's own, as it would have made it
        os.chown(other_logs, world.executor_user.uid, world.executor_user.gid)
    secret = f"victim-secret-{uuid.uuid4().hex}"
    gate = world.open_gate()
    victim = world.submit({"mode": "victim", "victim_secret": secret, "gate_port": gate})
    try:
        wait_until(lambda: victim_work_dir_ready(world, secret), 60, "the victim task to keep its secret")
    except AssertionError:
        print("victim result:", world.result(victim))  # shown with the failure
        raise
    nobody_runs_this = world.submit({"mode": "victim"}, pool="third")
    hostile = world.submit(attack_config(world, nobody_runs_this, secret))
    found = findings_of(world, hostile)
    print("findings:", json.dumps(found))  # shown with a failure, and with -s
    world.release(gate)
    assert world.wait_terminal(victim)["status"] == "SUCCESS"

    protected = world.recipe_user is not None or world.isolation == "bwrap"
    for attack in ("proc_environ", "proc_mem", "proc_fd"):
        assert not (found[attack]["ok"] and found["pid_is_executor"]), (attack, found)
    for attack, outcome in found.items():
        if isinstance(outcome, dict) and outcome.get("ok"):
            assert not outcome["token"], f"{attack} yielded the GMS token: {found}"
    if protected:
        for attack in STATE_READS:
            assert not found[attack]["ok"], (attack, found)
        assert not found["forged_record"]["ok"], found
    if world.isolation == "bwrap":
        for attack in TASK_READS:
            assert not found[attack]["ok"], (attack, found)
    if world.recipe_user is not None:
        assert found["uid"] == world.recipe_user.uid
    for directory in (world.state, world.state / "pools", world.state / "pools" / "other" / "outbox"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert found["self_dumpable"] == 1  # the recipe is a new exec: dumpable, and holds nothing of ours

    world.stop()  # a restart flushes every outbox first: a forged record would be delivered now
    world.start()
    forged = world.state / "pools" / "other" / "outbox" / f"{nobody_runs_this.rsplit(':', 1)[-1]}.json"
    wait_until(lambda: not forged.exists(), 60, "the forged record to be set aside")
    assert world.result(nobody_runs_this) is None
    if found["forged_record"]["ok"]:
        assert forged.with_name(forged.name + ".quarantined").exists()
        # logged just after the move aside: the file may be gone a moment before the line is written
        wait_until(lambda: "not authentic" in world.executor_log(), 30, "the quarantine to be logged")
    assert world.token not in world.every_output()


@pytest.mark.parametrize("world", [pytest.param(("root", "process", False), id="root-process")],
                         indirect=True)
def test_the_token_is_gone_from_the_executor_environment(world: SecurityWorld) -> None:
    """Root may read a non-dumpable process's environ: the token's bytes were overwritten."""
    world.start()
    environ = (f"/proc/{world.executor_pid}/environ")
    with open(environ, "rb") as handle:
        data = handle.read()
    assert world.token.encode() not in data
    assert b"DATAHUB_TELEMETRY_ENABLED=false" in data  # the rest of the block is intact


@pytest.mark.parametrize("world", [pytest.param(("root", "process", False), id="root-process")],
                         indirect=True)
def test_the_env_store_refuses_the_executor_credentials(world: SecurityWorld) -> None:
    """A careless allowlist names the host key and an alias of the token: both are refused."""
    host_key = f"host-aws-key-{uuid.uuid4().hex}"
    world.write_config(gms={"token": "${GMS_ALIAS}"},
                       secrets={"stores": ["env", "datahub"],
                                "env": {"names": ["GMS_ALIAS", "AWS_SECRET_ACCESS_KEY", "RECIPE_DB"]}})
    world.start({"GMS_ALIAS": world.token, "AWS_SECRET_ACCESS_KEY": host_key, "RECIPE_DB": "db-pass-1"})
    refusals = {"GMS_ALIAS": "refuses GMS_ALIAS",
                "AWS_SECRET_ACCESS_KEY": "not found in any store: AWS_SECRET_ACCESS_KEY"}
    for reference, expected in refusals.items():
        recipe = {"source": {"type": "hostile", "config": {"password": f"${{{reference}}}"}},
                  "sink": {"type": "console"}}
        result = world.wait_terminal(world.submit({}, recipe=recipe))
        assert result["status"] == "FAILURE" and expected in str(result.get("report")), result
    output = world.every_output()
    assert world.token not in output and host_key not in output
