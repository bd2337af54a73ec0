"""moto's WSGI app as the control plane serves it (``moto_server``): cheaper per request.

moto's ``DomainDispatcherApplication`` finds the backend of every request anew, and part of that
lists moto's own package directory (about 180 ``stat`` calls): 1-2 ms of CPU on each SQS call
the control plane relays. The answer depends only on the host it infers (``sqs.us-east-1...``),
so ``Dispatcher`` remembers it per host. Imported only when moto starts (moto's import is heavy).

Two pure functions moto calls on every SQS request are remembered too (``remember_pure_helpers``):
``method_names_from_class`` lists a response class's methods with ``inspect.getmembers``
(about 40 us a request, for a class that never changes), and ``camelcase_to_underscores``
converts each queue attribute's name character by character (about 8 us a name, some 60 names
per executor task, as a receive rebuilds every attribute of the queue). Same answers, from a
bounded cache. ``moto_sqs.lighten_sqs`` makes its SQS models' clock, ids and retention check
cheaper the same way.
"""

from __future__ import annotations

import functools
from typing import Any

import moto.core.responses
import moto.core.utils
import moto.sqs.models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from executor.local.controlplane.moto_sqs import lighten_sqs

MAX_HOSTS = 64
"""Hosts remembered; they come from requests' credential scopes, so the memory stays bounded."""


MAX_NAMES = 4096
"""Names and classes remembered: a bounded set (queue attributes, actions, response classes)."""


def remember_pure_helpers() -> None:
    """Put cached versions of moto's two per-request pure helpers where moto calls them (once)."""
    if hasattr(moto.core.utils.camelcase_to_underscores, "cache_info"):
        return
    camel = functools.lru_cache(maxsize=MAX_NAMES)(moto.core.utils.camelcase_to_underscores)
    methods = functools.lru_cache(maxsize=MAX_NAMES)(moto.core.utils.method_names_from_class)
    for module in (moto.core.utils, moto.core.responses, moto.sqs.models):
        module.camelcase_to_underscores = camel  # type: ignore[attr-defined]
    moto.core.responses.method_names_from_class = methods  # type: ignore[attr-defined]


class Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher with each host's backend looked up once."""

    def __init__(self) -> None:
        remember_pure_helpers()
        lighten_sqs()
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
