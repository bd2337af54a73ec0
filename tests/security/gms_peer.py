"""A hostile GMS on loopback: drips its answer, never answers, or answers with far too much.

Raw sockets, so that the test controls every byte and its timing, including the status line.
``HostilePeer`` serves each connection in its own thread and stops them all on ``stop()``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

Behaviour = Callable[["HostilePeer", socket.socket], None]
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class HostilePeer:
    """Accepts connections on 127.0.0.1 and runs ``behaviour`` on each after reading a request."""

    def __init__(self, behaviour: Behaviour, tls: ssl.SSLContext | None = None, reads: bool = True) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.reads = reads
        """False: never read the request (a peer that lets the client's send block)."""
        self.stopping = threading.Event()
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name="hostile-gms", daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> HostilePeer:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        assert not any(t.is_alive() for t in [self._acceptor, *self._threads])

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.tls is not None:
                    conn.settimeout(10)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                    conn.settimeout(None)
                if self.reads:
                    _read_request(conn)
                self.behaviour(self, conn)
            except OSError:
                return  # the client gave up: what the tests want


def read_head(conn: socket.socket) -> bytes:
    """A request's head and whatever of its body came with it; ``b""`` once the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def _read_request(conn: socket.socket) -> None:
    data = read_head(conn)
    if not data:
        raise OSError("client closed")
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("client closed")
        body += chunk


def drip(payload: bytes, every_s: float) -> Behaviour:
    """Send ``payload`` one byte every ``every_s`` seconds."""
    def behaviour(peer: HostilePeer, conn: socket.socket) -> None:
        for byte in payload:
            peer.send(conn, bytes([byte]))
            if peer.stopping.wait(every_s):
                return
    return behaviour


def silent(peer: HostilePeer, conn: socket.socket) -> None:
    """Accept, read the request, never answer."""
    peer.stopping.wait()


def flood(total: int, declare: bool) -> Behaviour:
    """Answer 200 with ``total`` bytes, declaring their length or not (then close-delimited)."""
    def behaviour(peer: HostilePeer, conn: socket.socket) -> None:
        length = f"Content-Length: {total}\r\n" if declare else "Connection: close\r\n"
        peer.send(conn, f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n".encode())
        chunk = b"9" * 65536
        left = total
        while left > 0 and not peer.stopping.is_set():
            part = chunk[: min(left, len(chunk))]
            peer.send(conn, part)
            left -= len(part)
    return behaviour


def tls_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and the
    certificate's file (what a client passes as ``verify``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile gms")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
