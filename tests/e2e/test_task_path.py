"""The task path end to end: GraphQL request -> SQS -> executor -> real datahub CLI -> result.

Each test drives the shared executor the way DataHub does and waits (with deadlines) until
the executor has delivered its terminal result; none asserts anything about speed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from executor.sandbox.cgroups import detect_cgroups
from tests.faults.ledger import wait_until
from tests.fixtures.executor import ExecutorHarness, sink_recipe
from tests.fixtures.spares import held_spare_pids, left_work_dirs

from .direct import new_request_urn, queue_depth, send_envelope, write_request
from .sampling import ProcessSampler, is_ingest_run

pytestmark = pytest.mark.cli

DATASET = "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.public.orders,PROD)"


def secret_forms(value: str) -> list[str]:
    """The value as it could leak: plain, base64 (with and without padding), URL-encoded."""
    b64 = base64.b64encode(value.encode()).decode()
    forms = [value, b64, b64.rstrip("="), quote(value, safe=""), quote(value)]
    assert len(set(forms)) >= 4  # the token's +, / and = make the forms differ
    return forms


def files_containing(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` whose bytes contain any of ``needles``."""
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            data = (Path(folder) / name).read_bytes()
            if any(n.encode() in data for n in needles):
                found.append(str(Path(folder) / name))
    return found


def stored_values_containing(e2e: ExecutorHarness, needles: list[str]) -> list[str]:
    """Every stored aspect version of the control plane (latest and history) holding a needle."""
    found = []
    for urn, aspect, _ in e2e.cp.list_aspects():
        for value in e2e.cp.aspect_history(urn, aspect):
            text = json.dumps(value)
            if any(n in text for n in needles):
                found.append(f"{urn} {aspect}")
    return found


def test_success_with_a_secret_that_never_leaks(e2e: ExecutorHarness) -> None:
    secret = e2e.cp.token  # the sink's token is the DataHub secret E2E_SINK_TOKEN
    with ProcessSampler(e2e.logs.text) as sampler:
        _, urn = e2e.submit(sink_recipe(e2e.cp))
        result = e2e.wait_terminal(urn)

    assert result["status"] == "SUCCESS", result["report"]
    assert e2e.delivered[urn] == "SUCCESS"
    properties = e2e.cp.get_aspect(DATASET, "datasetProperties")
    assert properties is not None and properties["description"] == "The orders table of the demo shop."
    assert any(a == "schemaMetadata" for u, a, _ in e2e.cp.list_aspects("dataset") if u == DATASET)
    history = e2e.cp.aspect_history(urn, "dataHubExecutionRequestResult")
    assert any(v.get("status") == "RUNNING" for v in history)  # progress while it ran

    forms = secret_forms(secret)
    assert sampler.ingest_runs_seen() == 1
    assert not [t for t in sampler.texts() if any(f in t for f in forms)]
    assert not [line for line in e2e.logs.text().splitlines() if any(f in line for f in forms)]
    assert not files_containing(e2e.state_dir, forms)
    assert not stored_values_containing(e2e, forms)


def test_a_failing_recipe_reports_the_cli_error(e2e: ExecutorHarness, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-metadata.json"
    _, urn = e2e.submit(sink_recipe(e2e.cp, path=missing))
    result = e2e.wait_terminal(urn)
    assert result["status"] == "FAILURE"
    assert e2e.delivered[urn] == "FAILURE"
    assert "Exited with code 1" in result["report"]
    assert "~~~~ Execution Log ~~~~" in result["report"]
    assert f"No such file or directory: '{missing}'" in result["report"]  # the CLI's own error
    assert "Pipeline finished with at least 1 failures" in result["report"]
    report = json.loads(result["structuredReport"]["serializedValue"])  # the CLI's --report-to file
    assert result["structuredReport"]["type"] == "RUN_INGEST"
    assert str(missing) in json.dumps(report["source"]["report"]["failures"])


def test_a_missing_secret_fails_before_anything_runs(e2e: ExecutorHarness) -> None:
    recipe = sink_recipe(e2e.cp, token="${E2E_NO_SUCH_SECRET}")
    _, urn = e2e.submit(recipe)
    result = e2e.wait_terminal(urn)
    assert result["status"] == "FAILURE"
    assert "E2E_NO_SUCH_SECRET" in result["report"]
    assert "nothing was run" in result["report"]
    # The CLI may have been spawned while the secrets resolved (it waits for its stdin, the
    # recipe): once the request failed it is killed, with its work dir, and it left no task log.
    # Its cgroup goes last: the kernel frees a killed process's membership asynchronously, so the
    # removal retries for a moment after the work dir is gone.
    task = urn.rsplit(":", 1)[-1]
    cgroups = detect_cgroups()
    parents = [p for p in (cgroups.memory_parent, cgroups.pids_parent) if p is not None]
    # With a warm spare (on by default) the task may have adopted it: then its CLI ran in the
    # spare's work dir and cgroup (``warm-spare-*``), and the log the adoption opened goes at
    # its clean-up. A spare the pool holds for the next task is no run of this one.
    pools = e2e.service.pools
    wait_until(lambda: not _ingest_runs(held_spare_pids(pools))
               and not _left_under(e2e.pool_dir(), task)
               and not left_work_dirs(e2e.pool_dir() / "work", pools)
               and not any(list(parent.glob(f"{task}-*")) for parent in parents)
               and not e2e.task_log(urn).exists(), 30,
               "the pre-started CLI, its work dir, its task cgroup and its log to be gone")


def _left_under(root: Path, task: str) -> bool:
    """True while anything of ``task`` is under ``root``, or while a directory vanishes as it is
    walked (a removal in progress: look again)."""
    try:
        return bool(list(root.rglob(f"{task}-*")))
    except FileNotFoundError:
        return True


def _ingest_runs(but: set[int]) -> list[psutil.Process]:
    """This process's children that are (or are becoming) a recipe's ``ingest run``, but ``but``."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            alive = proc.status() != psutil.STATUS_ZOMBIE
            if proc.pid not in but and is_ingest_run(proc.cmdline()) and alive:
                found.append(proc)
    return found


def test_an_unknown_task_fails_clearly(e2e: ExecutorHarness) -> None:
    urn = new_request_urn()
    write_request(e2e.cp, urn, "RUN_MONITOR", {"urn": "urn:li:monitor:x"})
    with ProcessSampler(e2e.logs.text) as sampler:
        send_envelope(e2e.cp, urn)
        result = e2e.wait_terminal(urn)
    assert result["status"] == "FAILURE"
    assert "Unknown task 'RUN_MONITOR'" in result["report"]
    assert sampler.ingest_runs_seen() == 0


def test_test_connection_reports_a_structured_result(e2e: ExecutorHarness) -> None:
    urn = e2e.test_connection(sink_recipe(e2e.cp))
    result = e2e.wait_terminal(urn)
    assert result["status"] == "SUCCESS", result["report"]
    structured = result["structuredReport"]  # the CLI's --report-to file
    assert structured["type"] == "TEST_CONNECTION"
    assert structured["contentType"] == "application/json"
    assert json.loads(structured["serializedValue"])["basic_connectivity"]["capable"] is True


def test_a_request_already_terminal_is_not_run_again(e2e: ExecutorHarness) -> None:
    urn = new_request_urn()
    recipe = json.dumps({**sink_recipe(e2e.cp), "run_id": urn})
    done = {"status": "SUCCESS", "startTimeMs": 1, "durationMs": 5, "report": "ran elsewhere"}
    write_request(e2e.cp, urn, "RUN_INGEST", {"recipe": recipe, "version": "bundled"}, result=done)
    with ProcessSampler(e2e.logs.text) as sampler:
        send_envelope(e2e.cp, urn)  # a redelivery after another executor finished it
        e2e.logs.wait_for(lambda text: "not running it again" in text and urn.rsplit(":", 1)[-1] in text)
        sampler.wait_until(lambda _: queue_depth(e2e.cp) == 0)  # the duplicate message is deleted
    assert sampler.ingest_runs_seen() == 0
    assert e2e.cp.aspect_history(urn, "dataHubExecutionRequestResult") == [done]
    assert urn not in e2e.delivered
