"""Name -> current actor ref, shared by the children of one supervisor.

Siblings look each other up here at the moment they need one another, so a restart of one
child (a *new* actor) never forces its siblings to restart. Never use pykka's global
registry by class: several pools run the same classes.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka


class Directory:
    """A thread-safe map from child name to its current, live ref."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}

    def put(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Record ``ref`` as the current incarnation of ``name``."""
        with self._lock:
            self._refs[name] = ref

    def remove(self, name: str, ref: pykka.ActorRef[Any] | None = None) -> None:
        """Forget ``name`` (only if it still points at ``ref``, when given)."""
        with self._lock:
            if ref is None or self._refs.get(name) is ref:
                self._refs.pop(name, None)

    def get(self, name: str) -> pykka.ActorRef[Any] | None:
        """The live ref of ``name``, or None while it is down or restarting."""
        with self._lock:
            ref = self._refs.get(name)
        return ref if ref is not None and ref.is_alive() else None

    def tell(self, name: str, message: Any) -> bool:
        """Send ``message`` to ``name`` if it is up; return whether it was sent."""
        ref = self.get(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def names(self) -> list[str]:
        """Names currently registered."""
        with self._lock:
            return list(self._refs)
