"""File heartbeats for the probes of DataHub's executor Helm chart.

That chart's probes do not call HTTP: they delete ``/tmp/worker_liveness_heartbeat`` (or the
readiness file) and fail if it was not there, and the worker touches both every 2 s. Beating the
same files lets this executor run under that chart unchanged. A file is touched only while the
matching state holds, and removed when it does not, so a probe that checks the file's age and one
that deletes it both see the failure at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from executor.observability.health import HealthState

DEFAULT_LIVENESS_PATH = Path("/tmp/worker_liveness_heartbeat")
DEFAULT_READINESS_PATH = Path("/tmp/worker_readiness_heartbeat")


class FileHeartbeats:
    """Touches (or removes) the liveness and readiness files from a ``HealthState``."""

    def __init__(
        self,
        liveness_path: str | os.PathLike[str] = DEFAULT_LIVENESS_PATH,
        readiness_path: str | os.PathLike[str] = DEFAULT_READINESS_PATH,
    ) -> None:
        self.liveness_path = Path(liveness_path)
        self.readiness_path = Path(readiness_path)
        self._warned: set[Path] = set()

    def beat(self, health: HealthState) -> tuple[bool, bool]:
        """Touch each file whose state holds, remove the others; returns ``(live, ready)``.

        Never raises for a file it cannot write: a heartbeat failure must not take the observer
        down; it is logged once per path and the probe then fails on its own.
        """
        live, _ = health.liveness()
        ready, _ = health.readiness()
        self._set(self.liveness_path, live)
        self._set(self.readiness_path, live and ready)
        return live, ready

    def clear(self) -> None:
        """Remove both files (at shutdown), so that a probe cannot see a stale success."""
        self._set(self.liveness_path, False)
        self._set(self.readiness_path, False)

    def _set(self, path: Path, present: bool) -> None:
        try:
            if present:
                _touch(path)
            else:
                path.unlink(missing_ok=True)
            self._warned.discard(path)
        except OSError as exc:
            if path not in self._warned:
                logger.warning("cannot update heartbeat file {}: {}", path, exc.strerror or exc)
                self._warned.add(path)


def _touch(path: Path) -> None:
    """Create or refresh ``path`` without following a symlink (it usually lives in shared /tmp)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.utime(fd)
    finally:
        os.close(fd)
