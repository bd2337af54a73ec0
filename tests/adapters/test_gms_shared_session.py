"""A pool's GMS clients share one ``Origin``: a task's calls reuse the pool's open connections.

A small HTTP/1.1 server on loopback counts the connections it accepts and records the headers
of each call. Clients made by one ``PoolContext`` (as every actor and every Task makes its own)
must reach it over one kept-alive connection, each with the token; closing one client (a Task
ending) must leave the origin to the others; ``close_http`` closes it (a later client opens a
new one); clients on several threads at once all get their answers.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.config import ExecutorConfig, GmsSettings, PoolSettings
from executor.pool.context import PoolContext
from tests.fixtures.http_thread import Answering, serving


class _Counting(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.authorizations: list[str | None] = []


class _Handler(Answering):
    server: _Counting

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_GET(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization"))
        self.answer(b"ok")


@pytest.fixture
def counting_server() -> Iterator[_Counting]:
    with serving(_Counting(), "counting-http") as server:
        yield server


def test_clients_of_one_pool_share_one_kept_alive_connection(counting_server: _Counting,
                                                             tmp_path: Path) -> None:
    host, port = counting_server.server_address[:2]
    pool = PoolSettings(id="default")
    config = ExecutorConfig(gms=GmsSettings(url=f"http://{host!s}:{port}"), state_dir=tmp_path, pools=(pool,))
    context = PoolContext(config=config, pool=pool, token="made-up-shared-token", instance_id="test")
    try:
        for _ in range(5):  # five Tasks, one after the other, each with its own client
            client = context.new_gms()
            client.health()
            client.close()
        reporter, task = context.new_gms(), context.new_gms()
        reporter.health()
        task.health()
        assert counting_server.connections == 1, "every call went over the one pooled connection"
        assert counting_server.authorizations == ["Bearer made-up-shared-token"] * 7
    finally:
        context.close_http()
    context.new_gms().health()  # a new origin after close_http: a new connection
    assert counting_server.connections == 2
    context.close_http()


def test_clients_on_several_threads_share_the_origin(counting_server: _Counting, tmp_path: Path) -> None:
    host, port = counting_server.server_address[:2]
    pool = PoolSettings(id="default", max_workers=4)
    config = ExecutorConfig(gms=GmsSettings(url=f"http://{host!s}:{port}"), state_dir=tmp_path, pools=(pool,))
    context = PoolContext(config=config, pool=pool, token="made-up-shared-token", instance_id="test")
    failures: list[BaseException] = []

    def task() -> None:
        client = context.new_gms()  # as a Task does: its own client, the pool's origin
        try:
            for _ in range(25):
                client.health()
        except BaseException as exc:  # reported by the asserts below
            failures.append(exc)

    threads = [threading.Thread(target=task, name=f"gms-caller-{i}") for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        context.close_http()
    assert not failures and not any(t.is_alive() for t in threads)
    assert counting_server.authorizations == ["Bearer made-up-shared-token"] * 100
    assert counting_server.connections <= 4, "at most one connection per caller at a time"
