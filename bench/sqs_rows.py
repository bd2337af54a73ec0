"""SQS send -> receive: direct to moto, through the control plane's gateway, and through a gateway
built the way it was before the Nagle fix (headers and body in two writes, no ``TCP_NODELAY``).

One sample is one ``SendMessage`` then ``ReceiveMessage`` of that message (and its delete, not
timed), so every sample is two SQS calls on kept-alive connections, as a poller makes them.
"""

from __future__ import annotations

import http.client
import time
from typing import Any

import boto3

from bench.anchor import REGION
from bench.world import World
from executor.local.controlplane.gateway import GatewayHandler, GatewayServer
from executor.local.controlplane.server import ControlPlane

POOL = "sqsrow"
QUERY = """query { listExecutorConfigs { executorConfigs {
  executorId region queueUrl accessKeyId secretKeyId sessionToken } } }"""


class _NagleHandler(GatewayHandler):
    """The handler as it was: unbuffered writes (headers, then body) and Nagle on."""

    wbufsize = 0
    disable_nagle_algorithm = False  # the base handlers turn Nagle off now

    def setup(self) -> None:
        super(GatewayHandler, self).setup()


class NagleGateway(GatewayServer):
    """A second gateway on the same leases and moto, with the old socket behaviour."""

    def __init__(self, cp: ControlPlane) -> None:
        super().__init__(
            "127.0.0.1", 0, cp.leases, cp.sqs_endpoint, lambda pool: {cp.queue_url(pool).rsplit("/", 1)[-1]}
        )
        self.RequestHandlerClass = _NagleHandler

    def open_upstream(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        with self._upstream_lock:
            self._upstream.add(conn)
        return conn


class SqsRows:
    """Clients for the three paths to the same queue."""

    def __init__(self, world: World) -> None:
        cp = world.cp
        configs = world.graphql(QUERY, {})["listExecutorConfigs"]["executorConfigs"]
        lease = next(c for c in configs if c["executorId"] == POOL)
        self.urls = {
            "executor (gateway)": lease["queueUrl"],
            "gateway before the fix": lease["queueUrl"],
            "direct to moto": cp.queue_url(POOL),
        }
        self.old_gateway = NagleGateway(cp)
        self.old_gateway.start()
        self.clients: dict[str, Any] = {
            "executor (gateway)": self._client(cp.sqs_gateway, lease),
            "gateway before the fix": self._client(self.old_gateway.url, lease),
            "direct to moto": self._client(
                cp.sqs_endpoint, {"accessKeyId": "bench", "secretKeyId": "bench", "sessionToken": None}
            ),
        }

    @staticmethod
    def _client(endpoint: str, lease: dict[str, Any]) -> Any:
        return boto3.session.Session().client(
            "sqs",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=lease["accessKeyId"],
            aws_secret_access_key=lease["secretKeyId"],
            aws_session_token=lease["sessionToken"],
        )

    def round_trips(self, side: str, count: int) -> list[float]:
        """``count`` send -> receive times in ms through ``side``'s path."""
        client, url = self.clients[side], self.urls[side]
        samples = []
        for index in range(count + 1):
            began = time.perf_counter()
            client.send_message(QueueUrl=url, MessageBody=f"bench {index}")
            messages: list[dict[str, Any]] = []
            while not messages:
                messages = client.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            took = (time.perf_counter() - began) * 1000
            client.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
            if index:  # the first one opens the connection
                samples.append(took)
        return samples

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.old_gateway.stop()
