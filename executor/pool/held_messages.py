"""The SQS calls the poller makes on the messages it holds: extend, delete, give back.

A round of extensions runs every third of the visibility timeout (and again, for the throttled
ones, shortly after); what each SQS answer means for the message is decided here, and the
poller only asks for a new lease when the round says the credentials were refused. ``settle``
ends one message's hold either way and hands back SQS's refusal for the caller to log.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from executor.errors import (
    ExecutorError,
    LeaseExpiredError,
    NotAllowedError,
    ThrottledError,
    TransportError,
)
from executor.pool.inflight import InFlightBook
from executor.queue.sqs import SqsQueue

if TYPE_CHECKING:
    from loguru import Logger


@dataclass
class Round:
    """What a round left to do: messages to try again shortly, a lease to ask for."""

    throttled: list[str] = field(default_factory=list)
    refused: ExecutorError | None = None


def extend_held(queue: SqsQueue, book: InFlightBook, visibility_s: int, log: Logger,
                only: Collection[str] | None = None) -> Round:
    """Extend every held message (or ``only`` these). A throttle sets that message aside and
    goes on with the others; refused or expired credentials end the round (a new lease is
    needed; the messages stay held); SQS not answering ends it too (the next round tries
    again); any other final answer means the message is no longer ours."""
    done = Round()
    for item in book.items():
        if only is not None and item.urn not in only:
            continue
        try:
            queue.extend(item.receipt_handle, visibility_s)
        except ThrottledError:
            done.throttled.append(item.urn)
        except (LeaseExpiredError, NotAllowedError) as exc:
            done.refused = exc
            return done
        except TransportError as exc:
            log.warning("could not extend the leases of {} message(s): {}", len(book), exc)
            return done
        except ExecutorError as exc:
            # An invalid receipt handle: the queue was recreated, or the lease lapsed and
            # someone else received it.
            book.pop(item.urn)
            log.warning("lost the message of {} ({}); no longer extending it", item.urn, exc)
    return done


def settle(queue: SqsQueue, receipt_handle: str, *, delete: bool,
           visibility_s: int = 0) -> ExecutorError | None:
    """Delete the message, or give it back, visible again after ``visibility_s``; SQS's error
    when it refused (the message then reappears after its current lease, never lost)."""
    try:
        if delete:
            queue.delete(receipt_handle)
        else:
            queue.extend(receipt_handle, visibility_s)
    except ExecutorError as exc:
        return exc
    return None
