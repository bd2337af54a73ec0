"""moto's WSGI app as the control plane serves it (``moto_server``): cheaper per request.

moto's ``DomainDispatcherApplication`` finds the backend of every request anew, and part of that
lists moto's own package directory (about 180 ``stat`` calls): 1-2 ms of CPU on each SQS call
the control plane relays. The answer depends only on the host it infers (``sqs.us-east-1...``),
so ``Dispatcher`` remembers it per host. Imported only when moto starts (moto's import is heavy).
"""

from __future__ import annotations

from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

MAX_HOSTS = 64
"""Hosts remembered; they come from requests' credential scopes, so the memory stays bounded."""


class Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher with each host's backend looked up once."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backend_of: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        """Plain dict reads and writes (atomic under the GIL; moto's ``get_application`` calls
        this under its own lock): two threads racing on a new host both look it up, harmlessly."""
        if host in self._backend_of:
            return self._backend_of[host]
        backend = super().get_backend_for_host(host)
        if len(self._backend_of) < MAX_HOSTS:
            self._backend_of[host] = backend
        return backend
