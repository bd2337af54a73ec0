"""``PoolActor``: what every long-lived child of a pool shares.

It knows its pool, logs with the pool id, owns one GMS client (on the pool's shared session, calls
bounded to a few seconds), and records a heartbeat for ``/healthz`` from its own strand (a
thread it may share), so a stuck handler shows up as a stale beat. Subclasses implement ``handle`` instead of
``on_receive``, and ``release`` for their own cleanup.
"""

from __future__ import annotations

from typing import Any, ClassVar

from executor.datahub.gms import GmsClient
from executor.pool.context import PoolContext
from executor.pool.messages import Beat
from executor.supervision import ChildContext, SupervisedActor

BEAT_S = 5.0


class PoolActor(SupervisedActor):
    """Base of the leaser, resolver, reporter, runner, poller and the per-request Tasks."""

    beats: ClassVar[bool] = True
    """Whether ``/healthz`` watches this actor (not the short-lived Tasks)."""

    def __init__(self, ctx: ChildContext, pool: PoolContext) -> None:
        super().__init__(ctx)
        self.pool = pool
        self.log = self.log.bind(pool=pool.pool_id)
        self._gms: GmsClient | None = None

    @property
    def gms(self) -> GmsClient:
        """This actor's GMS client, made on first use."""
        if self._gms is None:
            self._gms = self.pool.new_gms()
        return self._gms

    def on_start(self) -> None:
        super().on_start()
        if self.beats:
            self.actor_ref.tell(Beat())

    def teardown(self) -> None:
        try:
            self.release()
        finally:
            if self._gms is not None:
                self._gms.close()
            if self.beats and self.pool.health is not None:
                # Ended, not stuck: a parked pool or a restart's backoff must not read as a dead
                # process in /healthz. The next incarnation starts only after this, and beats anew.
                self.pool.health.forget(self.ctx.path)

    def release(self) -> None:
        """The subclass's own cleanup; runs once, whatever the ending."""

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Beat):
            self.on_beat()
            self.pool.heartbeat(self.ctx.path, self.beat_allowance_s())
            self.tell_self_on_tick(BEAT_S, Beat())  # with every actor's beat: one wake-up at rest
            return None
        return self.handle(message)

    def handle(self, message: Any) -> Any:
        """Handle one of the subclass's own messages."""
        self.log.warning("ignoring unknown message {}", type(message).__name__)
        return None

    def on_beat(self) -> None:
        """Periodic work of the subclass that rides on the heartbeat (gauges)."""

    def beat_allowance_s(self) -> float:
        """The interval ``/healthz`` expects between beats (twice this is stale): a beat may
        wait behind one GMS call of each actor on this actor's strand (the pool's quiet actors
        share one thread, one turn each in turn), each bounded by its total deadline (and the
        client fails fast after a timed-out call), so a slow GMS never makes an actor look
        dead. A strand that stays blocked makes every actor on it stale."""
        return BEAT_S + self.pool.gms_call_s * max(1, len(self.strand))
