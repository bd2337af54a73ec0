"""What a child starts that must outlive the child's restart but not its supervisor's.

A pool's Tasks are started by its runner but belong to the pool: a runner crash must leave
them running (the next runner adopts them), while the pool's own stop stops them and a pool
restart waits for their threads. In generic terms: a child links such threads to its
supervisor's lifeline (``ChildContext.subtree``), and the supervisor calls the child spec's
``stop_shared`` when it stops that child for good. These tests order events, not timings.
"""

from __future__ import annotations

from typing import Any

import pykka

from executor.supervision import ChildContext, ChildSpec, Directory, start_root, supervisor_spec

from .probe import Crash, Escalations, Probe, Worker, child_ref, policy, wait_for


class Spawner(Worker):
    """Starts one ``held`` worker per incarnation, owned by its supervisor's subtree."""

    def __init__(self, ctx: ChildContext, probe: Probe, spawned: list[pykka.ActorRef[Any]]) -> None:
        super().__init__(ctx, probe)
        self.spawned = spawned

    def setup(self) -> None:
        super().setup()
        ctx = ChildContext(name="held", path=f"{self.ctx.path}/held", incarnation=len(self.spawned) + 1,
                           parent=None, directory=Directory(), listed=False)
        self.spawned.append(Worker.start(ctx, self.probe))
        assert self.ctx.subtree is not None
        self.ctx.subtree.link(ctx.lifeline)


def spawner_spec(probe: Probe, spawned: list[pykka.ActorRef[Any]]) -> ChildSpec:
    def stop_held() -> None:
        probe.record("spawner", 0, "stop-shared")
        for ref in spawned:
            ref.stop(block=True, timeout=10)

    return ChildSpec("spawner", lambda ctx: Spawner.start(ctx, probe, spawned), 5.0, stop_shared=stop_held)


def test_a_child_restart_leaves_what_it_linked_to_its_supervisor_running(probe: Probe) -> None:
    spawned: list[pykka.ActorRef[Any]] = []
    root = start_root("root", [supervisor_spec("sub", [spawner_spec(probe, spawned)], policy())], policy())
    probe.wait_starts("spawner", 1)
    sub = child_ref(root, "sub")
    assert sub is not None
    child_ref(sub, "spawner").tell(Crash())  # type: ignore[union-attr]
    probe.wait_starts("spawner", 2)  # restarted without waiting for the first held worker ...
    assert spawned[0].is_alive()  # ... which runs on
    assert ("held", 1, "teardown-begin") not in probe.events
    root.stop(timeout=10)
    # The subtree's stop stopped both held workers through stop_shared, once the spawner had
    # stopped (so that it could not start another meanwhile).
    assert len(spawned) == 2 and not any(ref.is_alive() for ref in spawned)
    assert probe.index("spawner", 2, "teardown-end") < probe.index("spawner", 0, "stop-shared")
    assert probe.index("spawner", 0, "stop-shared") < probe.index("held", 1, "teardown-end")
    assert probe.index("spawner", 0, "stop-shared") < probe.index("held", 2, "teardown-end")


def test_a_subtree_is_not_restarted_while_a_linked_thread_still_runs(probe: Probe) -> None:
    """The sub-supervisor fails while the worker its child linked to it still runs (nothing
    stops it: no ``stop_shared``): the root must not start a second subtree beside it."""
    spawned: list[pykka.ActorRef[Any]] = []
    spec = ChildSpec("spawner", lambda ctx: Spawner.start(ctx, probe, spawned), 5.0)
    escalated = Escalations()
    root = start_root("root", [supervisor_spec("sub", [spec], policy(0), stop_timeout_s=0.5)], policy(),
                      escalated)
    probe.wait_starts("spawner", 1)
    sub = child_ref(root, "sub")
    assert sub is not None
    child_ref(sub, "spawner").tell(Crash())  # policy(0): the sub-supervisor gives up at once
    assert escalated.event.wait(10), "the root never gave up"
    assert "not starting a second instance" in (escalated.reason or "")
    assert probe.starts["spawner"] == 1  # never a second subtree beside the live worker
    assert spawned[0].is_alive()
    spawned[0].stop(block=True, timeout=10)
    wait_for(lambda: not root.is_alive(), what="root stopped")
