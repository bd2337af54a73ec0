"""moto's SQS, cheaper per call with the same answers (installed by ``moto_app.Dispatcher``).

Profiled in the bench's 4-worker rows (session 18), moto spent more on bookkeeping than on the
queue itself, on every side's calls alike (the executor's, the floors', Celery's):

- ``unix_time()`` / ``unix_time_millis()`` without an argument built two datetimes (now and the
  epoch) per call, and ``moto.sqs.models`` calls them for every message a receive scans
  (``Message.visible`` and ``delayed``): ``time.time()`` is the same instant (freezegun patches
  both). A datetime passed in is still converted by moto's own code.
- A receipt handle was 185 ``random.choice`` calls per message received, a request id 52 per
  answer: now as many bytes of moto's own generator (``mock_random``, so a seeded moto stays
  deterministic), each mapped onto the alphabet by a table. Every character of the alphabet
  can still come out; the handles and ids stay opaque and unique as before.
- The retention check of each message received read ``MessageRetentionPeriod`` through
  ``get_queue_attributes``, which rebuilt every attribute of the queue three times; it reads
  the queue's field now.

``python -m bench.cp_calls`` measures moto's CPU per call kind (ReceiveMessage about halved).

One change is not about cost: moto's long poll waits in one-second steps until messages come or
its wait ends (up to 20 s), and nothing cut it when the control plane stopped, so a stop left a
server thread behind for the rest of the wait (past the stop's bounded join, past the test that
started it). ``serving`` tells this thread's waits how to know their server is stopping; the
next step of the wait then raises ``LongPollCut`` and the server ends the request unanswered
(its client has gone with the stop anyway).
"""

from __future__ import annotations

import functools
import string
import threading
import time
from collections.abc import Callable
from random import Random
from typing import Any

import moto.core.utils
import moto.sqs.models
from moto.moto_api._internal import mock_random
from moto.moto_api._internal.moto_random import MotoRandom

RECEIPT_HANDLE_CHARS = 185
"""The length of moto's receipt handles (``moto.sqs.utils.generate_receipt_handle``)."""
_moto_unix_time = moto.core.utils.unix_time
_moto_wait_for_messages = moto.sqs.models.Queue.wait_for_messages
_serving = threading.local()


class LongPollCut(Exception):
    """The server this long poll is answered by is stopping: end the request unanswered."""


def serving(stopping: Callable[[], bool] | None) -> None:
    """How the long polls of this (server) thread know that their server is stopping."""
    _serving.stopping = stopping


def wait_for_messages(queue: Any, timeout: int) -> None:
    """moto's one-second step of a long poll, cut once this thread's server is stopping."""
    stopping: Callable[[], bool] | None = getattr(_serving, "stopping", None)
    if stopping is not None and stopping():
        raise LongPollCut
    _moto_wait_for_messages(queue, timeout)


@functools.lru_cache(maxsize=16)
def _table(alphabet: str) -> bytes:
    """A byte -> character table for ``bytes.translate``: every byte value names a character."""
    return bytes(ord(alphabet[value % len(alphabet)]) for value in range(256))


def random_text(rng: Random, alphabet: str, length: int) -> str:
    """``length`` characters of ``alphabet`` (ASCII) drawn from ``rng``, in C, not per character."""
    return rng.randbytes(length).translate(_table(alphabet)).decode("ascii")


def unix_time(dt: Any = None) -> float:
    """moto's ``unix_time``: seconds since the epoch of ``dt``, or of now."""
    return time.time() if dt is None else _moto_unix_time(dt)


def unix_time_millis(dt: Any = None) -> float:
    """moto's ``unix_time_millis``, on ``unix_time`` above."""
    return unix_time(dt) * 1000.0


def receipt_handle() -> str:
    """moto's ``generate_receipt_handle``: 185 lowercase letters."""
    return random_text(mock_random, string.ascii_lowercase, RECEIPT_HANDLE_CHARS)


def get_random_string(self: MotoRandom, length: int = 20, include_digits: bool = True,
                      lower_case: bool = False) -> str:
    """``MotoRandom.get_random_string`` (the request id of every answer), same alphabet."""
    alphabet = string.ascii_letters + (string.digits if include_digits else "")
    text = random_text(self, alphabet, length)
    return text.lower() if lower_case else text


def is_retained(self: moto.sqs.models.SQSBackend, queue_name: str, message: moto.sqs.models.Message) -> bool:
    """``SQSBackend.is_message_valid_based_on_retention_period``, from the queue's own field."""
    queue: Any = self.get_queue(queue_name)  # the attribute is set from the queue's attributes
    period = int(queue.message_retention_period)
    return period + message.sent_timestamp / 1000 > unix_time()  # type: ignore[operator]


def lighten_sqs() -> None:
    """Put the cheaper versions where moto's SQS calls them (idempotent)."""
    models: Any = moto.sqs.models
    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis
    models.generate_receipt_handle = receipt_handle
    models.SQSBackend.is_message_valid_based_on_retention_period = is_retained
    models.Queue.wait_for_messages = wait_for_messages
    MotoRandom.get_random_string = get_random_string  # type: ignore[method-assign]
