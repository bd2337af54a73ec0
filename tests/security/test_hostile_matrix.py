"""Issue 10 points 1, 2 and 4 in every set-up: root and non-root executor, ``process`` and ``bwrap``.

``matrix_world`` (``matrix_world.py``) starts one real executor per set-up; in each, the hostile
stand-in CLI (``hostile_cli.py``) tries, for real:

- read-back: its ``--report-to`` file replaced by a symlink to ``/proc/self/environ`` and to a
  secret file of the executor's, a hard link to that file, a FIFO, a directory (all at once,
  beside a well-behaved run): each run ends, no report is taken, the secret is nowhere;
- outside ids: raw queue messages whose request ids are an absolute path to a file of the
  executor's and ``../../../../x``: rejected as poison, no file touched or made; an id that is
  legal but not a plain name runs with its log under a safe name;
- masking: the executor's GMS token, the host's AWS keys and the pool's leased keys printed
  raw, base64 and hex (both cases) and written into the report; then a lease renewed while a
  recipe runs: the recipe waits (connected to a loopback port) until the executor holds the
  new keys, prints them, and they arrive masked.

After each attack every log, task log, state file and stored result is searched for leaks.
"""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path

import pytest

from executor.safe_names import safe_name
from executor.sandbox.masking import MASK
from tests.e2e.direct import send_envelope, write_request
from tests.fixtures.spares import assert_no_work_dir_left
from tests.security.bubblewrap import bubblewrap
from tests.security.hostile_world import leaks
from tests.security.matrix_world import (
    PLUGIN,
    MatrixWorld,
    ValueServer,
    lease_values,
    matrix_world,
    wait_until,
)
from tests.security.privilege_world import throwaway_users

pytestmark = pytest.mark.xdist_group("hostile-matrix")
"""One worker runs the module: its four executors (one per mode) start once, not once per worker."""

__all__ = ["bubblewrap", "matrix_world", "throwaway_users"]
PREFIX = "urn:li:dataHubExecutionRequest:"
REFUSED = "[sandbox] report file refused and left out: "
LEASE_WAIT_S = 60.0
"""Leases last ``matrix_world.LEASE_S``: a renewal comes well within this."""


def _canary_file(world: MatrixWorld) -> tuple[Path, str]:
    """A 0600 file of the executor's outside any work dir, holding a secret."""
    canary = "operator-canary-" + secrets.token_hex(12)
    path = world.world.base / f"operator-secret-{uuid.uuid4().hex[:6]}.txt"
    path.write_text(canary)
    path.chmod(0o600)
    world.private.append(world.give(path))
    return path, canary


def test_report_read_back_attacks_fail(matrix_world: MatrixWorld) -> None:
    world = matrix_world
    secret_file, canary = _canary_file(world)
    urns = {name: world.submit(name, target=str(secret_file)) for name in (
        "report_symlink_environ", "report_symlink_secret", "report_hardlink", "report_fifo",
        "report_directory", "well_behaved")}
    results = {name: world.wait(urn) for name, urn in urns.items()}
    refusals = {"report_symlink_environ": "it is a symbolic link",
                "report_symlink_secret": "it is a symbolic link",
                "report_fifo": "it is a FIFO, not a regular file",
                "report_directory": "it is a directory, not a regular file"}
    for name, why in refusals.items():
        result = results[name]
        assert result["status"] == "SUCCESS" and "structuredReport" not in result, (name, result)
        assert REFUSED + why in str(result["report"]), (name, result["report"])
    linked = results["report_hardlink"]
    if "hostile: report hard-linked" in str(linked["report"]):  # same uid, and the file is in view
        assert REFUSED + "it has 2 hard links" in str(linked["report"]), linked
    else:  # under bwrap the recipe cannot even see the file to link to it
        assert world.isolation == "bwrap" and linked["status"] == "FAILURE", linked
    assert "structuredReport" not in linked
    assert '"records": 1' in results["well_behaved"]["structuredReport"]["serializedValue"]
    assert secret_file.read_text() == canary, "the target was changed"
    written = world.everything_written()
    assert leaks(written, [canary, *world.own_credentials()]) == []
    leftover = world.world.state / "pools" / "default" / "work"
    assert_no_work_dir_left(leftover)


def test_path_shaped_request_ids_touch_nothing(matrix_world: MatrixWorld) -> None:
    world = matrix_world
    victim = world.world.base / f"victim-{uuid.uuid4().hex[:6]}.log"  # what ``<id>.log`` would hit
    victim.write_text("foreign content")
    world.give(victim)
    escaped = (world.pool_logs() / "../../../../x.log").resolve()
    mark = "malformed execution-request urn: its id holds '/' or '..' (path-shaped)"
    before = world.world.executor_log().count(mark)
    recipe = {"source": {"type": PLUGIN, "config": {"attack": "well_behaved"}}, "sink": {"type": "console"}}
    for request_id in (str(victim.with_suffix("")), "../../../../x"):
        # GMS knows them too, so an executor that accepted the message would run them
        write_request(world.cp, PREFIX + request_id, "RUN_INGEST", {"recipe": json.dumps(recipe)})
        send_envelope(world.cp, PREFIX + request_id)
    odd = f"{PREFIX}.hidden-{uuid.uuid4()}"
    write_request(world.cp, odd, "RUN_INGEST", {"recipe": json.dumps(recipe), "version": "bundled"})
    world.urns.append(odd)
    send_envelope(world.cp, odd)
    assert world.wait(odd)["status"] == "SUCCESS"
    wait_until(lambda: world.world.executor_log().count(mark) >= before + 2, 60, "both to be rejected")
    assert victim.read_text() == "foreign content"
    assert not escaped.exists()
    assert [p.name for p in victim.parent.glob(f"{victim.stem}*")] == [victim.name]
    names = [p.name for p in world.pool_logs().iterdir()]
    assert f"{safe_name(odd.rsplit(':', 1)[-1])}.log" in names
    assert not [n for n in names if n.startswith(".")]


def _assert_all_masked(result: dict[str, object], values: list[str]) -> None:
    assert result["status"] == "SUCCESS", result["report"]
    report = str(result["report"])
    for form in ("raw", "base64", "hex", "HEX"):  # the CLI did print them: they arrive masked
        assert report.count(f"hostile: {form} {MASK}") == len(values), (form, leaks(report, values))
    structured = result["structuredReport"]
    assert isinstance(structured, dict) and MASK in structured["serializedValue"]


def test_the_executors_credentials_in_every_encoding_are_masked(matrix_world: MatrixWorld) -> None:
    world = matrix_world
    wait_until(world.registered_leases, 60, "the executor's first lease")
    stolen = world.own_credentials()
    server = ValueServer()
    try:
        urn = world.submit("print_served_credentials", port=server.port)
        server.serve(stolen)
        result = world.wait(urn)
    finally:
        server.close()
    _assert_all_masked(result, stolen)
    assert leaks(world.everything_written(), stolen) == []


def test_a_lease_renewed_while_the_recipe_runs_is_masked_in_it(matrix_world: MatrixWorld) -> None:
    world = matrix_world
    server = ValueServer()
    try:
        urn = world.submit("print_served_credentials", port=server.port)
        server.accept()  # the recipe runs: its masker was built with the leases known until now
        known = {c["accessKeyId"] for c in world.registered_leases()}
        renewed = wait_until(lambda: [c for c in world.registered_leases() if c["accessKeyId"] not in known],
                             LEASE_WAIT_S, "the executor to renew its lease")
        fresh = [world.world.token, *lease_values(renewed)]
        server.serve(fresh)
        result = world.wait(urn)
    finally:
        server.close()
    _assert_all_masked(result, fresh)
    assert leaks(world.everything_written(), fresh) == []

