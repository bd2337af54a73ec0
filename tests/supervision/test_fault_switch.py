"""The test-only fault switch: works when set, costs nothing when unset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from executor.supervision import actor as actor_module
from executor.supervision import start_root
from executor.supervision.faults import FAULT_ENV, FaultSwitch, parse_rules

from .probe import Inspect, Probe, child_ref, policy, worker_spec


@dataclass(frozen=True)
class Tick:
    """A message class a rule can name."""


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rules in force for this test, as if the variable had been set when the module loaded."""
    rules = parse_rules("root/a@Tick*1,root/b*2")
    monkeypatch.setattr(actor_module, "FAULTS", FaultSwitch(rules))
    yield


def test_unset_the_switch_is_absent_from_every_actor(probe: Probe) -> None:
    assert FAULT_ENV not in os.environ and actor_module.FAULTS is None
    root = start_root("root", [worker_spec("a", probe)], policy())
    probe.wait_starts("a", 1)
    assert child_ref(root, "a").ask(Inspect(), timeout=5) is False  # type: ignore[union-attr]
    root.stop(timeout=10)


@pytest.mark.usefixtures("switch")
def test_set_the_switch_crashes_the_named_actors_as_often_as_asked(probe: Probe) -> None:
    root = start_root("root", [worker_spec("a", probe), worker_spec("b", probe)], policy())
    probe.wait_starts("b", 1)
    assert ("b", 3, "start") in probe.events  # two injected start failures before its setup ran
    probe.wait_starts("a", 1)
    first = child_ref(root, "a")
    assert first is not None and first.ask(Inspect(), timeout=5) is True  # wrapped: a rule names it
    first.tell(Tick())
    probe.wait_starts("a", 2)  # crashed on Tick, restarted
    assert ("a", 1, "got:Tick") not in probe.events  # the crash came before the handler
    second = child_ref(root, "a")
    assert second is not None
    second.tell(Tick())  # *1: once per process, so the new incarnation handles it
    probe.wait_event(lambda: ("a", 2, "got:Tick") in probe.events, "the second Tick handled")
    assert child_ref(root, "b").ask(Inspect(), timeout=5) is False  # type: ignore[union-attr]
    root.stop(timeout=10)


def test_the_variable_is_read_once_when_the_actor_module_is_imported() -> None:
    code = "from executor.supervision import actor; print(actor.FAULTS.rules[0].suffix)"
    env = {**os.environ, FAULT_ENV: "pool:x/poller@Poll*1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pool:x/poller"
