"""Every GMS call is bounded in time and size, whatever the peer does (issue 10 point 7).

A hostile GMS on loopback (``gms_peer``) drips its answer one byte at a time, status line
included, accepts and never answers, or sends 200 MB. The client's call ends by its total
deadline (a per-read timeout alone never fires against a drip) or as soon as the answer passes
the size cap, with a ``TransportError`` that says which; and after a call ran into its
deadline the next one fails fast, so an actor is blocked for one deadline, not one per call.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.datahub.gms import MAX_RESPONSE_BYTES, GmsClient
from executor.errors import TransportError
from tests.security.gms_peer import ANSWER, Behaviour, HostilePeer, drip, flood, silent, tls_context

DEADLINE_S = 1.5
HUGE = 200 * 1024 * 1024


@pytest.fixture
def serve() -> Iterator[list[HostilePeer]]:
    started: list[HostilePeer] = []
    yield started
    for peer in started:
        peer.stop()


def start(serve: list[HostilePeer], behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> HostilePeer:
    peer = HostilePeer(behaviour, tls).start()
    serve.append(peer)
    return peer


def timed_call(url: str, **client_args: object) -> tuple[float, TransportError]:
    """Seconds a ``server_config`` call took and the error it ended with."""
    with GmsClient(url, "test-token-not-real", timeout_s=DEADLINE_S, **client_args) as gms:  # type: ignore[arg-type]
        began = time.monotonic()
        with pytest.raises(TransportError) as raised:
            gms.server_config()
        return time.monotonic() - began, raised.value


@pytest.mark.parametrize("what", ["status line", "body"])
def test_a_dripping_answer_ends_at_the_deadline(serve: list[HostilePeer], what: str) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    payload = head + b" " * 400
    every_s = 0.25  # well under the per-read timeout: only a total deadline stops this
    if what == "body":
        peer = start(serve, lambda p, conn: (p.send(conn, head), drip(b" " * 400, every_s)(p, conn)))
    else:
        peer = start(serve, drip(payload, every_s))
    took, error = timed_call(peer.url)
    assert f"did not answer within {DEADLINE_S:g}s" in str(error)
    assert took < 3 * DEADLINE_S, took  # the whole drip would take 100+ s
    assert peer.sent < len(payload)


def test_a_gms_that_never_answers_ends_at_the_deadline_and_quiets_the_client(
    serve: list[HostilePeer],
) -> None:
    peer = start(serve, silent)
    with GmsClient(peer.url, "test-token-not-real", timeout_s=DEADLINE_S) as gms:
        began = time.monotonic()
        with pytest.raises(TransportError, match="did not answer within"):
            gms.health()
        first = time.monotonic() - began
        began = time.monotonic()
        with pytest.raises(TransportError, match="not tried"):
            gms.health()  # fails fast: one blocked deadline at a time
        assert time.monotonic() - began < first


@pytest.mark.parametrize("declare", [True, False], ids=["declared length", "close-delimited"])
def test_an_oversized_answer_is_abandoned_at_the_cap(serve: list[HostilePeer], declare: bool) -> None:
    peer = start(serve, flood(HUGE, declare))
    _, error = timed_call(peer.url)
    assert f"more than {MAX_RESPONSE_BYTES} bytes" in str(error)
    peer.stop()  # ends its sending thread; what it managed to send shows where the client stopped
    assert peer.sent < HUGE / 2


def test_a_small_cap_applies_to_every_call(serve: list[HostilePeer]) -> None:
    peer = start(serve, flood(64 * 1024, declare=False))
    _, error = timed_call(peer.url, max_bytes=4096)
    assert "more than 4096 bytes" in str(error)


def test_a_peer_that_never_reads_the_request_cannot_hold_the_send(serve: list[HostilePeer]) -> None:
    peer = HostilePeer(silent, reads=False).start()
    serve.append(peer)
    big = {"report": "x" * (20 * 1024 * 1024)}  # far more than the socket buffers hold
    with GmsClient(peer.url, "test-token-not-real", timeout_s=DEADLINE_S) as gms:
        began = time.monotonic()
        with pytest.raises(TransportError, match="did not answer within"):
            gms.ingest_proposal("dataHubExecutionRequest", "urn:li:dataHubExecutionRequest:x",
                                "dataHubExecutionRequestResult", big)
        assert time.monotonic() - began < 3 * DEADLINE_S


def test_a_normal_answer_still_works(serve: list[HostilePeer]) -> None:
    peer = start(serve, lambda p, conn: p.send(conn, ANSWER))
    with GmsClient(peer.url, "test-token-not-real", timeout_s=DEADLINE_S) as gms:
        assert gms.server_config() == {}


def test_the_deadline_holds_over_tls_too(serve: list[HostilePeer], tmp_path: Path) -> None:
    context, cert = tls_context(tmp_path)
    answering = start(serve, lambda p, conn: p.send(conn, ANSWER), context)
    with GmsClient(answering.url, "test-token-not-real", timeout_s=DEADLINE_S, verify=str(cert)) as gms:
        assert gms.server_config() == {}  # the configured CA is used, whatever the environment says
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    dripping = start(serve, drip(head + b" " * 400, 0.25), context)
    took, error = timed_call(dripping.url, verify=str(cert))  # type: ignore[arg-type]
    assert "did not answer within" in str(error) and took < 3 * DEADLINE_S, took
