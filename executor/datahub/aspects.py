"""DataHub's execution-request aspects: names, statuses, parsing the input, building the output.

Owns the shapes PROTOCOL.md describes: ``dataHubExecutionRequestInput`` is parsed (and
validated, once, at the edge) into an ``ExecutionRequest``; ``dataHubExecutionRequestResult``
and ``dataHubRemoteExecutorStatus`` are built here with DataHub's own size caps;
``dataHubExecutionRequestSignal`` is read here. Everything is plain JSON-ready dicts.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from executor.datahub.report_lines import body_end, has_longer_line, plain_lines, start_of_last
from executor.errors import BadInputError
from executor.sizes import parse_size

EXECUTION_REQUEST_ENTITY = "dataHubExecutionRequest"
EXECUTION_REQUEST_PREFIX = f"urn:li:{EXECUTION_REQUEST_ENTITY}:"
INPUT_ASPECT = "dataHubExecutionRequestInput"
RESULT_ASPECT = "dataHubExecutionRequestResult"
SIGNAL_ASPECT = "dataHubExecutionRequestSignal"
KEY_ASPECT = "dataHubExecutionRequestKey"
REMOTE_EXECUTOR_ENTITY = "dataHubRemoteExecutor"
PRESENCE_ASPECT = "dataHubRemoteExecutorStatus"

RUN_INGEST = "RUN_INGEST"
TEST_CONNECTION = "TEST_CONNECTION"
KILL = "KILL"

RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
TIMEOUT = "TIMEOUT"
CANCELLED = "CANCELLED"
ABORTED = "ABORTED"
DUPLICATE = "DUPLICATE"
STATUSES = frozenset({RUNNING, SUCCESS, FAILURE, TIMEOUT, CANCELLED, ABORTED, DUPLICATE})
TERMINAL = frozenset({SUCCESS, FAILURE, TIMEOUT, CANCELLED, ABORTED, DUPLICATE})
IMMUTABLE = frozenset({SUCCESS, CANCELLED, ABORTED, DUPLICATE})
"""GMS refuses any later write of the result once it holds one of these."""

MAX_REPORT_LINES = 2000
MAX_LINE_CHARS = 4096
MAX_PAYLOAD_CHARS = 15_368_520
"""DataHub's caps on the reported log tail and on report + structured report together."""

TASK_WEIGHT_VAR = "EXECUTOR_TASK_WEIGHT"
MEMORY_LIMIT_VAR = "EXECUTOR_TASK_MEMORY_LIMIT"
_LINE_MARK = " [line truncated]"


@dataclass(frozen=True)
class ExecutionRequest:
    """A validated ``dataHubExecutionRequestInput``; ``recipe``, args and env never show in a repr."""

    urn: str
    id: str
    task: str
    args: dict[str, str] = field(repr=False)
    executor_id: str
    source_type: str
    ingestion_source: str | None
    requested_at_ms: int
    actor_urn: str | None
    recipe_text: str = field(repr=False)
    recipe: dict[str, Any] = field(repr=False)
    version: str | None
    debug_mode: bool
    extra_env_vars: dict[str, str] = field(repr=False)
    extra_pip_requirements: list[str]
    extra_pip_plugins: list[str]
    weight_hint: float | None = None
    """``EXECUTOR_TASK_WEIGHT`` as given, if any; see ``task_weight``."""
    memory_limit: int | None = None
    """``EXECUTOR_TASK_MEMORY_LIMIT`` in bytes, if any."""

    @property
    def source_plugin(self) -> str | None:
        """The recipe's ``source.type`` (picks the bundled venv), if the recipe has one."""
        source = self.recipe.get("source")
        kind = source.get("type") if isinstance(source, dict) else None
        return kind if isinstance(kind, str) and kind else None

    def task_weight(self, max_workers: int) -> float:
        """This task's share of the pool, in (0, 1]: ``EXECUTOR_TASK_WEIGHT`` or ``1/max_workers``."""
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        default = 1.0 / max_workers
        if self.weight_hint is None:
            return default
        if self.weight_hint <= 0:
            logger.warning("{} {} is not positive; using {:.3f}", TASK_WEIGHT_VAR, self.weight_hint, default)
            return default
        return min(1.0, self.weight_hint)

    def memory_limit_bytes(self) -> int | None:
        """``EXECUTOR_TASK_MEMORY_LIMIT`` in bytes, or None when the request sets none."""
        return self.memory_limit

    @classmethod
    def from_aspect(cls, urn: str, value: object) -> ExecutionRequest:
        """Parse and validate the input aspect of ``urn``; ``BadInputError`` says what is wrong."""
        if not isinstance(urn, str) or not urn.startswith(EXECUTION_REQUEST_PREFIX) or \
                len(urn) == len(EXECUTION_REQUEST_PREFIX):
            raise BadInputError("not an execution-request urn")
        if value is None:
            raise BadInputError(f"the request has no {INPUT_ASPECT} aspect")
        if not isinstance(value, dict):
            raise BadInputError(f"{INPUT_ASPECT} is not a JSON object")
        args = _string_map(value.get("args", {}), "args")
        source = value.get("source") or {}
        if not isinstance(source, dict):
            raise BadInputError("source is not an object")
        env = _env_vars(args.get("extra_env_vars"))
        recipe_text = args.get("recipe", "")
        return cls(
            urn=urn,
            id=urn[len(EXECUTION_REQUEST_PREFIX):],
            task=_required_text(value, "task"),
            args=args,
            executor_id=_optional_text(value, "executorId") or "",
            source_type=_optional_text(source, "type", "source.type") or "",
            ingestion_source=_optional_text(source, "ingestionSource", "source.ingestionSource"),
            requested_at_ms=_int(value.get("requestedAt", 0), "requestedAt"),
            actor_urn=_optional_text(value, "actorUrn"),
            recipe_text=recipe_text,
            recipe=_recipe(recipe_text),
            version=args.get("version", "").strip() or None,
            debug_mode=args.get("debug_mode", "false").strip().lower() == "true",
            extra_env_vars=env,
            extra_pip_requirements=_string_list(args.get("extra_pip_requirements"), "extra_pip_requirements"),
            extra_pip_plugins=_string_list(args.get("extra_pip_plugins"), "extra_pip_plugins"),
            weight_hint=_weight(env.get(TASK_WEIGHT_VAR)),
            memory_limit=parse_memory(env[MEMORY_LIMIT_VAR]) if env.get(MEMORY_LIMIT_VAR) else None,
        )


def parse_memory(text: str) -> int:
    """``EXECUTOR_TASK_MEMORY_LIMIT`` in bytes (``executor.sizes``: DataHub's byte count, or a
    Kubernetes quantity); ``BadInputError`` for anything else, so the request ends as FAILURE."""
    return parse_size(text, MEMORY_LIMIT_VAR)


def _required_text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"{key} is missing or not a non-empty string")
    return value.strip()


def _optional_text(obj: dict[str, Any], key: str, label: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInputError(f"{label or key} is not a string")
    return value


def _int(value: object, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{label} is not an integer")
    return value


def _string_map(value: object, label: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadInputError(f"{label} is not an object")
    bad = sorted(str(k) for k, v in value.items() if not isinstance(v, str))
    if bad:
        raise BadInputError(f"{label} value(s) for {', '.join(bad)} are not strings")
    return {str(k): v for k, v in value.items()}


def _json_arg(text: str | None, label: str) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadInputError(f"args.{label} is not valid JSON") from None


def _recipe(text: str) -> dict[str, Any]:
    value = _json_arg(text, "recipe")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInputError("args.recipe is not a JSON object")
    return value


def _env_vars(text: str | None) -> dict[str, str]:
    value = _json_arg(text, "extra_env_vars")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInputError("args.extra_env_vars is not a JSON object")
    env: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, dict | list) or item is None:
            raise BadInputError(f"args.extra_env_vars[{key!r}] is not a scalar")
        env[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return env


def _string_list(text: str | None, label: str) -> list[str]:
    value = _json_arg(text, label)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInputError(f"args.{label} is not a JSON list of strings")
    return list(value)


def _weight(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadInputError(f"{TASK_WEIGHT_VAR} {text!r} is not a number") from None
    if math.isnan(value):
        raise BadInputError(f"{TASK_WEIGHT_VAR} is not a number")
    return value


# -- the result ----------------------------------------------------------------------------
def result_aspect(
    status: str,
    start_ms: int,
    duration_ms: int,
    report: str,
    structured_report_json: str | None,
    task: str,
    executor_instance_id: str | None,
) -> dict[str, Any]:
    """A ``dataHubExecutionRequestResult`` within DataHub's caps.

    The report keeps its last 2,000 lines of at most 4 KiB; if report and structured report
    together exceed 15,368,520 characters the structured report is dropped first (as DataHub
    does), then the report is cut. ``executorInstanceId`` is a DataHub Cloud field: pass None
    for an open-source GMS, whose model lacks it and refuses unknown fields.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown execution status {status!r}")
    text = cap_report(report)
    structured = structured_report_json
    if structured is not None and len(structured) + len(text) > MAX_PAYLOAD_CHARS:
        structured = None
        text = (f"WARNING: report and structured report exceeded {MAX_PAYLOAD_CHARS} characters "
                f"together, so the structured report was removed.\n{text}")
    if len(text) > MAX_PAYLOAD_CHARS:
        prefix = f"WARNING: the report exceeded {MAX_PAYLOAD_CHARS} characters and was cut.\n"
        text = prefix + text[len(text) - (MAX_PAYLOAD_CHARS - len(prefix)):]
    aspect: dict[str, Any] = {
        "status": status,
        "startTimeMs": int(start_ms),
        "durationMs": max(0, int(duration_ms)),
        "report": text,
    }
    if structured:
        aspect["structuredReport"] = {
            "type": task,
            "serializedValue": structured,
            "contentType": "application/json",
        }
    if executor_instance_id:
        aspect["executorInstanceId"] = executor_instance_id
    return aspect


def cap_report(report: str) -> str:
    """The last ``MAX_REPORT_LINES`` lines, each cut to ``MAX_LINE_CHARS``, with a marker if cut.

    A report already within both caps (the usual case: the Task cuts the log to fit) comes back
    as it is, checked without splitting it (``report_lines``).
    """
    if plain_lines(report) and start_of_last(report, MAX_REPORT_LINES, body_end(report)) == 0 \
            and not has_longer_line(report, MAX_LINE_CHARS):
        return report
    lines = report.splitlines()
    dropped = 0
    if len(lines) > MAX_REPORT_LINES:
        dropped = len(lines) - (MAX_REPORT_LINES - 1)
        lines = lines[dropped:]
    capped = [
        line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - len(_LINE_MARK)] + _LINE_MARK
        for line in lines
    ]
    if dropped:
        capped.insert(0, f"[{dropped} earlier log lines truncated...]")
    text = "\n".join(capped)
    return text + "\n" if report.endswith("\n") and capped else text


def is_terminal(result: object) -> bool:
    """True when a stored result aspect holds a terminal status."""
    return isinstance(result, dict) and result.get("status") in TERMINAL


def signal_from_aspect(value: object) -> str | None:
    """The signal (``"KILL"``) of a ``dataHubExecutionRequestSignal`` aspect, or None."""
    if not isinstance(value, dict):
        return None
    signal = value.get("signal")
    return signal.strip().upper() if isinstance(signal, str) and signal.strip() else None


# -- presence ------------------------------------------------------------------------------
def presence_aspect(
    *,
    pool_id: str,
    version: str,
    hostname: str,
    uptime_s: float,
    stopped: bool = False,
    address: str | None = None,
    expired: bool = False,
    embedded: bool = False,
    internal: bool = False,
    log_delivery: bool = False,
    channel: str = "SQS",
    reported_at_s: int | None = None,
) -> dict[str, Any]:
    """A ``dataHubRemoteExecutorStatus`` record (fields as PROTOCOL.md lists them)."""
    if channel not in ("SQS", "KAFKA"):
        raise ValueError("channel must be SQS or KAFKA")
    return {
        "executorPoolId": pool_id,
        "executorReleaseVersion": version,
        "executorAddress": address or local_address(),
        "executorHostname": hostname,
        "executorUptime": float(max(0.0, uptime_s)),
        "executorExpired": expired,
        "executorStopped": stopped,
        "executorEmbedded": embedded,
        "executorInternal": internal,
        "logDeliveryEnabled": log_delivery,
        "reportedAt": int(time.time()) if reported_at_s is None else reported_at_s,
        "channel": channel,
    }


def instance_id(pool_id: str, gms_host: str, suffix: str | None = None, address: str | None = None) -> str:
    """``<sha256(ip)[:8]>-<8 random [a-z0-9]>.<pool>.<gms host>``, as DataHub names an instance.

    ``gms_host`` may be a bare host or a URL; pass ``suffix`` to keep one id per process.
    """
    host = gms_host.split("://", 1)[-1].split("/", 1)[0] or "localhost"
    digest = hashlib.sha256((address or local_address()).encode()).hexdigest()[:8]
    tail = suffix or "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    return f"{digest}-{tail}.{pool_id}.{host}"


def local_address() -> str:
    """This host's address as its own name resolves (no packets sent); loopback if unknown."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
