"""``PoolActor``: what every long-lived child of a pool shares.

It knows its pool, logs with the pool id, owns one GMS client (on the pool's shared session, calls
bounded to a few seconds), and is watched by ``/healthz`` through its strand (a thread it may
share): liveness is read when asked (``HealthState.watch``), never beaten, so a pool at rest
delivers its quiet actors no message at all, and a stuck handler still shows, as a turn older
than the allowance. Subclasses implement ``handle`` instead of ``on_receive``, and ``release``
for their own cleanup.
"""

from __future__ import annotations

from typing import Any, ClassVar

from executor.datahub.gms import GmsClient
from executor.pool.context import PoolContext
from executor.supervision import ChildContext, SupervisedActor

BEAT_S = 5.0
"""The base of the liveness allowance (``beat_allowance_s``): the period the actors' beats had,
kept so that a strand is judged stuck after as long as a stale beat used to take."""


class PoolActor(SupervisedActor):
    """Base of the leaser, resolver, reporter, runner, poller and the per-request Tasks."""

    watched: ClassVar[bool] = True
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
        if self.watched and self.pool.health is not None:
            # Before ``setup``: a start that hangs is a stuck turn too. The probe holds the
            # actor until ``teardown`` forgets it, which every ending runs.
            self.pool.health.watch(self.ctx.path, self.liveness)
        super().on_start()

    def teardown(self) -> None:
        try:
            self.release()
        finally:
            if self._gms is not None:
                self._gms.close()
            if self.watched and self.pool.health is not None:
                # Ended, not stuck: a parked pool or a restart's backoff must not read as a dead
                # process in /healthz. The next incarnation starts only after this, and is watched anew.
                self.pool.health.forget(self.ctx.path)

    def release(self) -> None:
        """The subclass's own cleanup; runs once, whatever the ending."""

    def on_receive(self, message: Any) -> Any:
        return self.handle(message)

    def handle(self, message: Any) -> Any:
        """Handle one of the subclass's own messages."""
        self.log.warning("ignoring unknown message {}", type(message).__name__)
        return None

    def liveness(self) -> tuple[float, float]:
        """``(stuck_s, allowance_s)`` for ``/healthz`` (any thread): how long this actor's strand
        has kept work waiting (``Strand.stall_s``), judged by ``beat_allowance_s``."""
        return self.strand.stall_s(), self.beat_allowance_s()

    def beat_allowance_s(self) -> float:
        """How long a turn of this actor's strand, or a wait in its line, may last (twice this is
        stuck): a message may wait behind one GMS call of each actor on the strand (the pool's
        quiet actors share one thread, one turn each in turn), each bounded by its total
        deadline (and the client fails fast after a timed-out call), so a slow GMS never makes
        an actor look dead. A strand that stays blocked makes every actor on it stale. The
        numbers are those of the beats this replaced (``BEAT_S`` plus the calls)."""
        return BEAT_S + self.pool.gms_call_s * max(1, len(self.strand))
