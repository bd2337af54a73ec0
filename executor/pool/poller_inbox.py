"""The poller's inbox: a stop put there also cuts the poller's long poll short.

The poller's thread spends most of its time in SQS's long poll (up to 20 s). pykka's stop is a
message like any other, handled only once the receive has returned; this inbox sees the stop
arrive, on the stopper's thread, and tells the poller at once (``QueuePoller.stop_requested``
interrupts the receive: ``executor.queue.interrupt``).
"""

from __future__ import annotations

from typing import Any, Protocol

import pykka
from loguru import logger
from pykka._envelope import Envelope

from executor.supervision.strandactor import StrandInbox


class Stoppable(Protocol):
    """What the inbox needs of its actor."""

    def stop_requested(self) -> None:
        """Called on the stopper's thread when a stop is put in the inbox."""


class StopCutsTheLongPoll(StrandInbox):
    """A strand inbox that tells its actor, on the stopper's thread, that a stop is coming, so
    the poller ends its long poll now instead of after up to 20 s. Like every strand inbox it
    holds its actor weakly (an ended poller and its clients must not outlive their refs)."""

    def put(self, envelope: Envelope[Any], /) -> None:
        if isinstance(envelope.message, pykka.messages._ActorStop):
            actor: Stoppable | None = self._actor()  # type: ignore[assignment]
            try:
                if actor is not None:
                    actor.stop_requested()
            except Exception as exc:  # the stop itself must go in whatever happens here
                logger.warning("could not cut the long poll short for a stop: {}", exc)
        super().put(envelope)
