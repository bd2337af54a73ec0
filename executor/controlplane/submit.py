"""What ``submit``, ``cancel`` and ``secret set`` do, through the GraphQL API only.

``submit`` creates (or, by name, updates) an ingestion source for a recipe file, asks for a
run and returns the request URN; ``watch`` follows a request until a terminal status, printing
status changes and new log lines, then a summary. Polling errors that may pass (GMS briefly
down) are retried with the project's backoff; final ones end the watch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from executor.backoff import Backoff, RetryState
from executor.controlplane.client import GraphQLClient
from executor.errors import BadInputError, ConfigError, RetryableError
from executor.exitcodes import ExitCode

TERMINAL = frozenset({"SUCCESS", "FAILURE", "TIMEOUT", "CANCELLED", "ABORTED", "DUPLICATE"})
EXIT_BY_STATUS = {"SUCCESS": ExitCode.OK, "TIMEOUT": ExitCode.TIMEOUT, "CANCELLED": ExitCode.CANCELLED}
POLL_BACKOFF = Backoff(min_s=1.0, max_s=10.0)

_FIND_SOURCES = """query($q: String) { listIngestionSources(input: {start: 0, count: 1000, query: $q})
  { ingestionSources { urn name } } }"""
_CREATE_SOURCE = "mutation($i: UpdateIngestionSourceInput!) { createIngestionSource(input: $i) }"
_UPDATE_SOURCE = (
    "mutation($u: String!, $i: UpdateIngestionSourceInput!) { updateIngestionSource(urn: $u, input: $i) }"
)
_RUN = "mutation($u: String!) { createIngestionExecutionRequest(input: {ingestionSourceUrn: $u}) }"
_REQUEST = """query($u: String!) { executionRequest(urn: $u) { urn input { source { ingestionSource } }
  result { status startTimeMs durationMs report structuredReport { type serializedValue } } } }"""
_CANCEL = """mutation($s: String!, $u: String!) {
  cancelIngestionExecutionRequest(input: {ingestionSourceUrn: $s, executionRequestUrn: $u}) }"""
LOG_MARKER = "~~~~ Execution Log ~~~~"
"""Separates a terminal report's summary from the run's log (see ``executor.pool.task``)."""
_FIND_SECRETS = (
    "query($q: String) { listSecrets(input: {start: 0, count: 1000, query: $q}) { secrets { urn name } } }"
)
_CREATE_SECRET = "mutation($i: CreateSecretInput!) { createSecret(input: $i) }"  # noqa: S105
_UPDATE_SECRET = "mutation($i: UpdateSecretInput!) { updateSecret(input: $i) }"  # noqa: S105


@dataclass(frozen=True)
class Submission:
    """What to run: a recipe file, the pool, and the source's name and CLI version."""

    recipe_path: Path
    pool: str
    name: str | None = None
    version: str | None = None


def load_recipe(path: Path) -> dict[str, Any]:
    """The recipe as an object; ConfigError names the file and what is wrong."""
    try:
        recipe = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    source = recipe.get("source") if isinstance(recipe, dict) else None
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        raise ConfigError(str(path), ["source.type: a recipe needs a source with a type"])
    return dict(recipe)


def submit(client: GraphQLClient, job: Submission) -> str:
    """Create or update the source named ``job.name`` (default: the file's stem); run it."""
    recipe = load_recipe(job.recipe_path)
    name = job.name or job.recipe_path.stem
    config: dict[str, Any] = {"recipe": json.dumps(recipe), "executorId": job.pool}
    if job.version:
        config["version"] = job.version
    source_input = {"name": name, "type": recipe["source"]["type"], "config": config}
    found = client.execute(_FIND_SOURCES, {"q": name})["listIngestionSources"]["ingestionSources"]
    existing = [s["urn"] for s in found if s["name"] == name]
    if existing:
        answer = client.execute(_UPDATE_SOURCE, {"u": existing[0], "i": source_input})
        source_urn = answer["updateIngestionSource"]
    else:
        source_urn = client.execute(_CREATE_SOURCE, {"i": source_input})["createIngestionSource"]
    return str(client.execute(_RUN, {"u": source_urn})["createIngestionExecutionRequest"])


def cancel(client: GraphQLClient, request_urn: str) -> None:
    """Write the KILL signal for a request (BadInputError if there is no such request)."""
    found = client.execute(_REQUEST, {"u": request_urn})["executionRequest"]
    if found is None:
        raise BadInputError(f"no execution request {request_urn}")
    source = (found.get("input") or {}).get("source") or {}
    client.execute(_CANCEL, {"s": source.get("ingestionSource") or "", "u": request_urn})


def set_secret(client: GraphQLClient, name: str, value: str) -> str:
    """Create the secret, or update it if the name exists; returns its URN."""
    found = client.execute(_FIND_SECRETS, {"q": name})["listSecrets"]["secrets"]
    existing = [s["urn"] for s in found if s["name"] == name]
    if existing:
        update = {"urn": existing[0], "name": name, "value": value}
        return str(client.execute(_UPDATE_SECRET, {"i": update})["updateSecret"])
    return str(client.execute(_CREATE_SECRET, {"i": {"name": name, "value": value}})["createSecret"])


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """Lines of ``current`` not yet shown, given the log tail shown last time (a sliding window)."""
    for overlap in range(min(len(previous), len(current)), 0, -1):
        if previous[-overlap:] == current[:overlap]:
            return current[overlap:]
    return current


def watch(
    client: GraphQLClient,
    urn: str,
    out: TextIO,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ExitCode:
    """Follow ``urn`` until terminal; print progress to ``out``; the exit code for its status."""
    retry = RetryState(POLL_BACKOFF)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status, shown = "", list[str]()
    while deadline is None or time.monotonic() < deadline:
        try:
            request = client.execute(_REQUEST, {"u": urn})["executionRequest"]
            retry.succeeded()
        except RetryableError as exc:
            delay = retry.failed(time.monotonic())
            out.write(f"[watch] {exc}; retrying in {delay:.1f}s\n")
            sleep(delay)
            continue
        if request is None:
            raise BadInputError(f"no execution request {urn}")
        result = request.get("result") or {}
        if result.get("status") and result["status"] != status:
            status = result["status"]
            out.write(f"[status] {status}\n")
        lines = (result.get("report") or "").splitlines()
        if status in TERMINAL and LOG_MARKER in lines:
            lines = lines[: lines.index(LOG_MARKER)]  # the log itself was followed already
        for line in new_lines(shown, lines):
            out.write(f"  {line}\n")
        shown = lines
        out.flush()
        if status in TERMINAL:
            out.write(summary(result) + "\n")
            return EXIT_BY_STATUS.get(status, ExitCode.FAILURE)
        sleep(poll_s)
    out.write(f"[watch] gave up after {timeout_s}s; the request keeps running\n")
    return ExitCode.FAILURE


def summary(result: dict[str, Any]) -> str:
    """One line: status, duration, and the report's main counters when it has them."""
    text = f"{result.get('status')}"
    if result.get("durationMs") is not None:
        text += f" in {int(result['durationMs']) / 1000:.1f}s"
    structured = (result.get("structuredReport") or {}).get("serializedValue")
    try:
        report = json.loads(structured) if structured else {}
    except ValueError:
        report = {}
    source = ((report.get("source") or {}).get("report") or {}) if isinstance(report, dict) else {}
    sink = ((report.get("sink") or {}).get("report") or {}) if isinstance(report, dict) else {}
    counters = {
        "events": source.get("events_produced"),
        "written": _written(result.get("status"), sink),
        "failures": _count(source.get("failures")) + _count(sink.get("failures")),
    }
    shown = ", ".join(f"{k}={v}" for k, v in counters.items() if v is not None)
    return f"{text} ({shown})" if report else text


def _written(status: object, sink: dict[str, Any]) -> object:
    """Records the sink wrote. The datahub-rest sink writes its report before it waits for its
    last batches, so those are still ``pending_requests`` there; after a SUCCESS they were written."""
    written, pending = sink.get("total_records_written"), sink.get("pending_requests")
    if not isinstance(written, int) or not isinstance(pending, int) or pending <= 0:
        return written
    return written + pending if status == "SUCCESS" else f"{written} (+{pending} pending)"


def _count(value: object) -> int:
    return len(value) if isinstance(value, list | dict) else 0
