"""The executor's one exception hierarchy.

Split by what the caller can do about it::

    ExecutorError
    ├── RetryableError            try again later, with backoff
    │   ├── TransportError        connection refused, timeout, 5xx, DNS
    │   ├── ThrottledError        429 / SQS throttling
    │   └── LeaseExpiredError     AWS answered ExpiredToken / InvalidClientTokenId
    └── FinalError                retrying cannot help
        ├── ConfigError           a bad config file or env var (names file and field)
        ├── BadInputError         a malformed task, message or argument
        ├── NotAllowedError       refused by policy (locked venvs, 401/403)
        ├── ImmutableError        GMS refuses a write after a terminal result
        └── MissingSecretError    a referenced secret exists in no store

Code that retries catches ``RetryableError`` only; anything else is a bug or a
final answer and goes to the supervisor or into the task's result.
"""

from __future__ import annotations


class ExecutorError(Exception):
    """Base of every error the executor raises on purpose."""


class RetryableError(ExecutorError):
    """A failure that may go away: retry with backoff."""


class TransportError(RetryableError):
    """The peer could not be reached or answered with a server error."""


class ThrottledError(RetryableError):
    """The peer asked us to slow down."""


class LeaseExpiredError(RetryableError):
    """The leased AWS credentials were refused as expired or unknown: refresh the lease."""


class FinalError(ExecutorError):
    """A failure that retrying cannot fix."""


class ConfigError(FinalError):
    """An invalid configuration; the message names the source and the field path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class BadInputError(FinalError):
    """A malformed message, task or argument."""


class NotAllowedError(FinalError):
    """Refused by policy or by authorization."""


class ImmutableError(FinalError):
    """GMS refused a write because the request already has a terminal result."""


class MissingSecretError(FinalError):
    """Secrets referenced by a recipe were found in no store; holds their names only."""

    def __init__(self, names: list[str]) -> None:
        self.names = sorted(names)
        super().__init__("secret(s) not found in any store: " + ", ".join(self.names))
