"""systemd's notification protocol (sd_notify), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``. The service sends
``READY=1`` once it is up, ``WATCHDOG=1`` at least every half watchdog interval while it is
healthy, ``STATUS=...`` for ``systemctl status``, and ``STOPPING=1`` on the way out. Outside
systemd every call is a no-op, so the same code runs in a container or a terminal.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

from loguru import logger

STATUS_MAX = 200
"""``systemctl status`` shows one line; longer texts are cut."""


class SystemdNotifier:
    """Sends datagrams to ``$NOTIFY_SOCKET``; does nothing when it is unset.

    ``environ`` defaults to ``os.environ`` and is read once, at construction.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_seconds(env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", ""))
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with ``Type=notify``."""
        return self._address is not None

    def watchdog_interval_s(self) -> float | None:
        """systemd's watchdog timeout in seconds, or None when it is off or meant for another PID.

        Send ``WATCHDOG=1`` at least twice per interval (every half of it, as sd_watchdog_enabled
        advises).
        """
        return self._watchdog_s

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``"READY=1"``, newline-separated assignments); True when sent.

        Failures are logged once and swallowed: losing a notification must never stop the service
        (systemd's own timeouts then say what went wrong).
        """
        if self._address is None:
            return False
        data = state.encode("utf-8", "replace")
        try:
            with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self._address)
            return True
        except OSError as exc:
            if not self._warned:
                logger.warning("cannot notify systemd at {!r}: {}", self._address, exc.strerror or exc)
                self._warned = True
            return False

    def ready(self, status: str = "") -> bool:
        """``READY=1``, with an optional status line."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: tell systemd the service is healthy."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=<text>``; newlines are flattened so the text cannot inject other assignments."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self) -> bool:
        """``STOPPING=1``: the service is shutting down on purpose."""
        return self.notify("STOPPING=1")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= STATUS_MAX else flat[: STATUS_MAX - 3] + "..."


def _socket_address(value: str) -> str | bytes | None:
    """The sendto() address for ``NOTIFY_SOCKET``: ``@name`` is abstract (leading NUL)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    logger.warning("ignoring NOTIFY_SOCKET={!r}: neither an absolute path nor @abstract", value)
    return None


def _watchdog_seconds(usec: str, pid: str) -> float | None:
    if not usec:
        return None
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            logger.warning("ignoring WATCHDOG_PID={!r}: not a number", pid)
            return None
    try:
        value = int(usec)
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC={!r}: not a number", usec)
        return None
    return value / 1_000_000 if value > 0 else None
