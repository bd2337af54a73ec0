"""The DataHub GraphQL operations of the user tools: sources, runs, cancels, secrets, look-ups.

Every call goes through ``GmsClient.graphql``, the executor's own client, so the tools share
its timeouts, error mapping (``executor.errors``) and token scrubbing, and work against any
DataHub GMS as well as the local control plane. Only fields of DataHub's public schema are
asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from executor.datahub.aspects import EXECUTION_REQUEST_PREFIX, TERMINAL
from executor.datahub.gms import GmsClient
from executor.errors import BadInputError, ConfigError
from executor.pool.outcome import INTERRUPTED_MARKER

_FIND_SOURCES = """query findIngestionSources($q: String) {
  listIngestionSources(input: {start: 0, count: 1000, query: $q}) { ingestionSources { urn name } } }"""
_CREATE_SOURCE = """mutation createIngestionSource($i: UpdateIngestionSourceInput!) {
  createIngestionSource(input: $i) }"""
_UPDATE_SOURCE = """mutation updateIngestionSource($u: String!, $i: UpdateIngestionSourceInput!) {
  updateIngestionSource(urn: $u, input: $i) }"""
_RUN = """mutation createIngestionExecutionRequest($u: String!) {
  createIngestionExecutionRequest(input: {ingestionSourceUrn: $u}) }"""
_REQUEST = """query executionRequest($u: String!) { executionRequest(urn: $u) {
  urn id input { task requestedAt source { type ingestionSource } }
  result { status startTimeMs durationMs report structuredReport { type serializedValue } } } }"""
_CANCEL = """mutation cancelIngestionExecutionRequest($s: String!, $u: String!) {
  cancelIngestionExecutionRequest(input: {ingestionSourceUrn: $s, executionRequestUrn: $u}) }"""
_FIND_SECRETS = """query findSecrets($q: String) {
  listSecrets(input: {start: 0, count: 1000, query: $q}) { secrets { urn name } } }"""
_CREATE_SECRET = "mutation createSecret($i: CreateSecretInput!) { createSecret(input: $i) }"  # noqa: S105
_UPDATE_SECRET = "mutation updateSecret($i: UpdateSecretInput!) { updateSecret(input: $i) }"  # noqa: S105


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


def request_urn(text: str) -> str:
    """A request URN from a URN or a bare request id (what ``status`` and ``cancel`` accept)."""
    text = text.strip()
    if not text:
        raise BadInputError("an execution request URN or id is required")
    if text.startswith("urn:"):
        if not text.startswith(EXECUTION_REQUEST_PREFIX):
            raise BadInputError(f"{text!r} is not an execution request URN ({EXECUTION_REQUEST_PREFIX}...)")
        return text
    return EXECUTION_REQUEST_PREFIX + text


def submit(client: GmsClient, job: Submission) -> str:
    """Create or update the source named ``job.name`` (default: the file's stem); run it."""
    recipe = load_recipe(job.recipe_path)
    name = job.name or job.recipe_path.stem
    config: dict[str, Any] = {"recipe": json.dumps(recipe), "executorId": job.pool}
    if job.version:
        config["version"] = job.version
    source_input = {"name": name, "type": recipe["source"]["type"], "config": config}
    found = client.graphql(_FIND_SOURCES, {"q": name})["listIngestionSources"]["ingestionSources"]
    existing = [s["urn"] for s in found if s["name"] == name]
    if existing:
        answer = client.graphql(_UPDATE_SOURCE, {"u": existing[0], "i": source_input})
        source_urn = answer["updateIngestionSource"]
    else:
        source_urn = client.graphql(_CREATE_SOURCE, {"i": source_input})["createIngestionSource"]
    return str(client.graphql(_RUN, {"u": source_urn})["createIngestionExecutionRequest"])


def get_request(client: GmsClient, urn: str) -> dict[str, Any]:
    """The execution request (input and result); BadInputError when GMS has no such request."""
    found = client.graphql(_REQUEST, {"u": urn})["executionRequest"]
    if not isinstance(found, dict):
        raise BadInputError(f"no execution request {urn}")
    return found


def cancel(client: GmsClient, urn: str) -> str | None:
    """Write the KILL signal for a request that may still run; None when written.

    A request that already has a final result is left alone, and its status is returned: a
    signal could change nothing, and "cancel requested" would be a false answer.
    """
    found = get_request(client, urn)
    result = found.get("result") or {}
    if is_final(result):
        return str(result["status"])
    source = (found.get("input") or {}).get("source") or {}
    client.graphql(_CANCEL, {"s": source.get("ingestionSource") or "", "u": urn})
    return None


def set_secret(client: GmsClient, name: str, value: str) -> str:
    """Create the secret, or update it if the name exists; returns its URN."""
    found = client.graphql(_FIND_SECRETS, {"q": name})["listSecrets"]["secrets"]
    existing = [s["urn"] for s in found if s["name"] == name]
    if existing:
        update = {"urn": existing[0], "name": name, "value": value}
        return str(client.graphql(_UPDATE_SECRET, {"i": update})["updateSecret"])
    return str(client.graphql(_CREATE_SECRET, {"i": {"name": name, "value": value}})["createSecret"])


def is_interrupted(result: dict[str, Any]) -> bool:
    """A FAILURE left by an executor shutdown: the request runs again and a later result replaces it."""
    return result.get("status") == "FAILURE" and str(result.get("report") or "").startswith(
        INTERRUPTED_MARKER
    )


def is_final(result: dict[str, Any]) -> bool:
    """A terminal status that no later run will replace."""
    return result.get("status") in TERMINAL and not is_interrupted(result)
