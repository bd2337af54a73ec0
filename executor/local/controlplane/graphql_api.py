"""Runs one GraphQL request against the schema and shapes the answer like DataHub's.

Parsing, validation (unknown fields or operations, wrong variables) and execution are
graphql-core's; failures come back in ``errors`` with HTTP 200, as GMS does. A resolver's
``FinalError`` (bad input, not allowed) is reported with its message and a DataHub-style
``extensions.code``; anything unexpected is logged here and reported as an internal error
without details, so no internal state leaks to the caller.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_schema, graphql_sync
from loguru import logger

from executor.errors import BadInputError, ConfigError, FinalError, ImmutableError, NotAllowedError
from executor.local.controlplane.graphql_resolvers import ROOT, ApiContext
from executor.local.controlplane.graphql_schema import SDL


@cache
def schema() -> GraphQLSchema:
    """The schema, built once per process."""
    return build_schema(SDL)


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
    result = graphql_sync(
        schema(),
        body["query"],
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
