"""A private CA for tests (a corporate CA's stand-in) and server certificates it signs, and a
TLS front that makes the tests' CONNECT proxy an https:// proxy."""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tests.adapters.loopback_server import LoopbackServer


class PrivateCa:
    """A CA certificate in ``ca_file``; ``server_context(name)`` is a server's, signed by it."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test private CA")])
        now = datetime.now(timezone.utc)
        self._cert = (
            x509.CertificateBuilder().subject_name(self._name).issuer_name(self._name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(_pem(self._cert))

    def server_context(self, name: str) -> ssl.SSLContext:
        """A server context whose certificate names ``name`` (a host name or an IP address)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alt: Any = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            alt = x509.DNSName(name)
        now = datetime.now(timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_file, key_file = self._directory / f"{name}.pem", self._directory / f"{name}.key"
        cert_file.write_bytes(_pem(cert))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


class TlsFront(LoopbackServer):
    """Terminates TLS on 127.0.0.1 and relays each connection to ``backend`` (host, port)."""

    def __init__(self, context: ssl.SSLContext, backend: tuple[str, int]) -> None:
        super().__init__("tls-front")
        self._context, self._backend = context, backend

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(10)
            tls = self._context.wrap_socket(conn, server_side=True)
            tls.setblocking(False)
            with socket.create_connection(self._backend, timeout=10) as upstream:
                self.track(upstream)
                upstream.setblocking(False)
                _pump(tls, upstream, self._stopping)


def _pump(tls: ssl.SSLSocket, upstream: socket.socket, stopping: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    with selectors.DefaultSelector() as selector:
        selector.register(tls, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, tls)
        while not stopping.is_set():
            for key, _ in selector.select(0.5):
                source: Any = key.fileobj
                try:
                    data = source.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                if not data:
                    return
                key.data.setblocking(True)
                key.data.sendall(data)
                key.data.setblocking(False)
            while tls.pending():
                data = tls.recv(65536)
                upstream.setblocking(True)
                upstream.sendall(data)
                upstream.setblocking(False)
