"""Runs one GraphQL request against the schema and shapes the answer like DataHub's.

Parsing, validation (unknown fields or operations, wrong variables) and execution are
graphql-core's; failures come back in ``errors`` with HTTP 200, as GMS does. A resolver's
``FinalError`` (bad input, not allowed) is reported with its message and a DataHub-style
``extensions.code``; anything unexpected is logged here and reported as an internal error
without details, so no internal state leaks to the caller.

A query string's parsed and validated document is kept (``document``): clients send the same
few query strings with new variables every time, and parsing plus validating one cost more of
the control plane's CPU than executing it (about 1.5 ms a call, docs/performance.md)."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, build_schema, execute_sync, parse, validate
from loguru import logger

from executor.errors import BadInputError, ConfigError, FinalError, ImmutableError, NotAllowedError
from executor.local.controlplane.graphql_resolvers import ROOT, ApiContext
from executor.local.controlplane.graphql_schema import SDL

CACHED_QUERY_CHARS = 2 * 1024
"""Longer query strings are parsed and validated on every call, so the cache stays small: a kept
document holds its token list (about 100 bytes of memory per character of query), and every
fixed query of the project is under 300 characters."""


@cache
def schema() -> GraphQLSchema:
    """The schema, built once per process."""
    return build_schema(SDL)


class _Invalid(Exception):
    """Carries a query's errors out of ``_checked``: ``lru_cache`` keeps no call that raised, so
    an invalid query (whose errors hold its whole token list) never stays in the cache."""

    def __init__(self, errors: list[GraphQLError]) -> None:
        super().__init__("invalid query")
        self.errors = errors


def document(query: str) -> DocumentNode | list[GraphQLError]:
    """``query`` parsed and validated against the schema, or its errors (short valid ones cached)."""
    if len(query) > CACHED_QUERY_CHARS:
        return _check(query)
    try:
        return _checked(query)
    except _Invalid as invalid:
        return invalid.errors


@lru_cache(maxsize=256)
def _checked(query: str) -> DocumentNode:
    """The executor's, the CLI's and the tests' handful of fixed strings (the AST is read-only
    to execution, so one validated document serves every thread)."""
    found = _check(query)
    if isinstance(found, list):
        raise _Invalid(found)
    return found


def _check(query: str) -> DocumentNode | list[GraphQLError]:
    try:
        parsed = parse(query)
    except GraphQLError as error:
        return [error]
    errors = validate(schema(), parsed)
    return list(errors) if errors else parsed


def run_graphql(body: object, context: ApiContext) -> dict[str, Any]:
    """Execute a GraphQL request body ``{"query", "variables", "operationName"}``."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return {"errors": [{"message": "body must be a JSON object with a 'query' string"}]}
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return {"errors": [{"message": "'variables' must be a JSON object"}]}
    operation = body.get("operationName")
    if operation is not None and not isinstance(operation, str):
        return {"errors": [{"message": "'operationName' must be a string"}]}
    checked = document(body["query"])
    if isinstance(checked, list):
        return {"data": None, "errors": [_format(e) for e in checked]}
    result = execute_sync(
        schema(),
        checked,
        root_value=ROOT,
        context_value=context,
        variable_values=variables,
        operation_name=operation,
    )
    answer: dict[str, Any] = {"data": result.data}
    if result.errors:
        answer["errors"] = [_format(e) for e in result.errors]
    return answer


def _format(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    formatted = dict(error.formatted)
    if original is None or isinstance(original, GraphQLError):
        formatted["extensions"] = {"code": 400, "type": "BAD_REQUEST", "classification": "ValidationError"}
        return formatted
    if isinstance(original, NotAllowedError):
        formatted["extensions"] = {"code": 403, "type": "UNAUTHORIZED"}
    elif isinstance(original, ConfigError):
        logger.error("graphql: {}", original)
        formatted["extensions"] = {"code": 500, "type": "SERVER_ERROR"}
    elif isinstance(original, BadInputError | ImmutableError | FinalError):
        formatted["extensions"] = {"code": 400, "type": "BAD_REQUEST"}
    else:
        # No traceback: loguru's diagnose mode would print local values, secrets among them.
        logger.error("graphql resolver {} failed: {}", formatted.get("path"), type(original).__name__)
        formatted["message"] = "An unknown error occurred."
        formatted["extensions"] = {"code": 500, "type": "SERVER_ERROR"}
    return formatted
