"""Observability of the executor: health, metrics, and how the OS and Kubernetes learn of them.

Plain threads and sockets, no actors: the supervision tree feeds these pieces through their
methods, and they keep answering while the actors are busy.

- ``HealthState``: liveness probes (and heartbeats) per component, readiness per pool (``health.py``).
- ``Metrics``: Prometheus metrics in a registry of their own (``metrics.py``).
- ``ObservabilityServer``: ``/healthz``, ``/readyz``, ``/metrics`` over HTTP (``server.py``).
- ``FileHeartbeats``: the probe files of DataHub's Helm chart (``heartbeat_files.py``).
- ``SystemdNotifier``: sd_notify READY/WATCHDOG/STATUS/STOPPING (``sdnotify.py``).
"""

from executor.observability.health import HealthState
from executor.observability.heartbeat_files import FileHeartbeats
from executor.observability.metrics import Metrics
from executor.observability.sdnotify import SystemdNotifier
from executor.observability.server import ObservabilityServer

__all__ = ["FileHeartbeats", "HealthState", "Metrics", "ObservabilityServer", "SystemdNotifier"]
