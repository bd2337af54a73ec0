"""The test-only fault switch: make a chosen actor crash, to prove that supervision works.

Off unless the environment variable ``REMOTE_EXECUTOR_TEST_FAULTS`` is set; never set it in
production. Its value is a comma list of rules ``SUFFIX[@MESSAGE][*N]``:

``pool:default/reporter``
    the actor whose tree path ends with ``pool:default/reporter`` crashes at every start;
``pool:default/reporter*3``
    ... at its first 3 starts only (a later restart succeeds);
``pool:default/poller@Housekeeping*1``
    ... the first time it handles a message of class ``Housekeeping`` (once in this process).

Counts are per rule and per process, across restarts of the actor. The crash is a plain
``RuntimeError`` raised where a real bug would raise, so the supervisor cannot tell the two apart.
The variable is read once, when ``executor.supervision.actor`` is imported; unset, no actor
checks anything at start and no handler is wrapped.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

FAULT_ENV = "REMOTE_EXECUTOR_TEST_FAULTS"


@dataclass(frozen=True)
class FaultRule:
    """One rule: where (path suffix), when (at start, or on a message class), how often."""

    suffix: str
    message: str | None = None
    times: int | None = None
    """None: every time."""

    def matches(self, path: str) -> bool:
        """True when this rule names the actor at ``path``."""
        return path.endswith(self.suffix)


def parse_rules(text: str) -> tuple[FaultRule, ...]:
    """Rules from the switch's value; raises ValueError on a malformed rule (a test bug)."""
    rules = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        where, _, count = item.partition("*")
        suffix, _, message = where.partition("@")
        if not suffix or (count and not count.isdigit()):
            raise ValueError(f"malformed {FAULT_ENV} rule {item!r}: expected SUFFIX[@MESSAGE][*N]")
        rules.append(FaultRule(suffix, message or None, int(count) if count else None))
    return tuple(rules)


class FaultSwitch:
    """The rules in force and how often each has fired (thread-safe)."""

    def __init__(self, rules: tuple[FaultRule, ...]) -> None:
        self.rules = rules
        self._fired: dict[FaultRule, int] = {}
        self._lock = threading.Lock()

    def wants_messages(self, path: str) -> bool:
        """True when some rule may crash the actor at ``path`` while it handles a message."""
        return any(r.message is not None and r.matches(path) for r in self.rules)

    def at_start(self, path: str) -> None:
        """Raise if a start rule for ``path`` still has crashes to give."""
        self._fire(path, None)

    def on_message(self, path: str, message: object) -> None:
        """Raise if a rule for ``path`` and this message's class still has crashes to give."""
        self._fire(path, type(message).__name__)

    def _fire(self, path: str, message: str | None) -> None:
        for rule in self.rules:
            if rule.message != message or not rule.matches(path):
                continue
            with self._lock:
                fired = self._fired.get(rule, 0)
                if rule.times is not None and fired >= rule.times:
                    continue
                self._fired[rule] = fired + 1
            when = f"handling {message}" if message else "start"
            raise RuntimeError(f"injected fault at {path} on {when} ({FAULT_ENV})")


def switch() -> FaultSwitch | None:
    """The fault switch the environment asks for, or None when the variable is unset (production)."""
    text = os.environ.get(FAULT_ENV, "")
    return FaultSwitch(parse_rules(text)) if text else None


def arm(rules: FaultSwitch, path: str, actor: Any) -> None:
    """Crash now if a start rule names ``path``; else, if a message rule does, make ``actor``
    crash on that message. Called once per actor start, and only while the switch is set."""
    rules.at_start(path)
    if not rules.wants_messages(path):
        return
    handle = actor.on_receive

    def faulty(message: Any) -> Any:
        rules.on_message(path, message)
        return handle(message)

    # An instance attribute shadows the method pykka calls for each message, for this actor only.
    setattr(actor, "on_receive", faulty)  # noqa: B010
