"""Named process exit codes, in one place, for systemd, Kubernetes and scripts."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the process tells its own supervisor (systemd, kubelet, a shell)."""

    OK = 0
    """Clean stop, or (``run --once``, ``submit --wait``) the task succeeded."""
    FAILURE = 1
    """A task failed (``--once``), or a check failed (``doctor``)."""
    CONFIG = 2
    """The configuration is invalid: fix it before restarting."""
    ESCALATED = 3
    """The root supervisor gave up (every pool parked, or observability failing): let the OS
    supervisor restart us."""
    TIMEOUT = 4
    """A task hit its wall-time limit (``run --once``)."""
    CANCELLED = 5
    """A task was cancelled (``run --once``)."""
    INTERRUPTED = 130
    """Stopped by a second signal without a clean drain."""
