"""Fixtures of the supervision tests: a probe, and no thread left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pykka
import pytest

from .probe import Probe, wait_for


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture(autouse=True)
def no_leaked_threads(probe: Probe) -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    for event in probe.hold_teardown.values():
        event.set()
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    wait_for(lambda: {t.ident for t in threading.enumerate() if t.is_alive()} <= before,
             what="every actor and timer thread to end")
