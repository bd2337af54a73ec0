"""The cache of dynamic venvs under the state dir: built once, shared, evicted least-recently-used.

Layout under the cache root::

    store/<key>-<nonce>/     a built venv (never moved: venvs are not relocatable)
    venvs/<key> -> ../store/<key>-<nonce>     published by an atomic symlink rename
    locks/<key>.build        held exclusively while building: one build per key, across processes
    locks/<key>.use          held shared by every run using the venv; eviction needs it exclusively

Two tasks (threads or processes) asking for the same venv: the first builds, the second
waits on the build lock and then reuses the result. Eviction runs after each build, removes
least-recently-used venvs until the cache is under its size cap, and skips venvs in use.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from loguru import logger

from executor.errors import RetryableError
from executor.sandbox.stoppable import check_not_stopped
from executor.sandbox.venvs import LATEST, Progress, VenvBuilder, VenvRequest
from executor.sandbox.workdir import dir_usage

META = "remote-executor-venv.json"


def cache_key(request: VenvRequest, today: str | None = None) -> str:
    """``<plugin>-<16 hex>``; ``latest`` is keyed by the day so it is re-resolved daily."""
    version = request.version
    if version == LATEST:
        version = f"latest@{today or datetime.now(timezone.utc).date().isoformat()}"
    identity = json.dumps([version, request.plugin, sorted(request.extra_plugins),
                           list(request.extra_requirements), list(sys.version_info[:2])])
    return f"{request.plugin}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


class FileLock:
    """An ``flock`` on one file, waited for with a deadline."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, mode: int, timeout_s: float, on_wait: Progress | None = None, what: str = "",
                stop: threading.Event | None = None) -> None:
        """Take the lock, waiting at most ``timeout_s``; ``Stopped`` as soon as ``stop`` is set."""
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            check_not_stopped(stop, f"waiting for {what}")
            try:
                fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if on_wait is not None and not told:
                on_wait(f"waiting for {what}")
                told = True
            if time.monotonic() > deadline:
                raise RetryableError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            if stop is not None:
                stop.wait(0.05)  # flock has no timed wait; another process holds the lock
            else:
                time.sleep(0.05)

    def try_acquire(self, mode: int) -> bool:
        try:
            fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Release (closing the descriptor drops the lock)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


class VenvLease:
    """A venv in use: holds its shared use lock until ``release``."""

    def __init__(self, path: Path, key: str, lock: FileLock) -> None:
        self.path = path
        self.key = key
        self._lock: FileLock | None = lock

    def release(self) -> None:
        """The run is over: the venv may be evicted again."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> VenvLease:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class VenvCache:
    """Dynamic venvs under ``root``, at most ``max_bytes`` in total (the one being used may exceed it)."""

    def __init__(self, root: Path, max_bytes: int, build_timeout_s: float = 1800.0,
                 stop: threading.Event | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.build_timeout_s = build_timeout_s
        self.stop = stop
        """Set when the task that wants the venv stops: lock waits end with ``Stopped``."""
        for sub in ("store", "venvs", "locks"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def published(self, key: str) -> Path | None:
        """The venv of ``key`` when it is built and published."""
        link = self.root / "venvs" / key
        target = link.resolve() if link.is_symlink() else None
        return target if target is not None and (target / META).exists() else None

    def acquire(self, request: VenvRequest, builder: VenvBuilder, progress: Progress | None = None
                ) -> VenvLease:
        """The venv for ``request``, built if needed, leased until ``release``."""
        say = progress or (lambda _line: None)
        key = cache_key(request)
        for _ in range(3):
            if self.published(key) is None:
                self._build_once(key, request, builder, say)
            use = FileLock(self.root / "locks" / f"{key}.use")
            try:
                use.acquire(fcntl.LOCK_SH, self.build_timeout_s, say, f"venv {key} to be free of eviction",
                            self.stop)
            except BaseException:
                use.close()  # the lock's descriptor never leaks
                raise
            path = self.published(key)
            if path is not None:
                os.utime(path / META)
                say(f"using cached venv {key}")
                return VenvLease(path, key, use)
            use.close()  # evicted between the check and the lock: build again
        raise RetryableError(f"venv {key} kept disappearing from the cache")

    def _build_once(self, key: str, request: VenvRequest, builder: VenvBuilder, say: Progress) -> None:
        lock = FileLock(self.root / "locks" / f"{key}.build")
        try:
            lock.acquire(fcntl.LOCK_EX, self.build_timeout_s, say, f"another build of venv {key}", self.stop)
            if self.published(key) is not None:
                return
            target = self.root / "store" / f"{key}-{os.urandom(4).hex()}"
            say(f"building venv {key}: {request.requirement()}")
            try:
                builder.build(target, request, say)
                size = dir_usage(target)
                _write_json(target / META, {"key": key, "size": size, "request": request.requirement(),
                                            "built_at": datetime.now(timezone.utc).isoformat()})
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            self._publish(key, target)
            say(f"venv {key} ready ({size // 2**20} MiB)")
        finally:
            lock.close()
        self.evict(keep=key)

    def _publish(self, key: str, target: Path) -> None:
        link = self.root / "venvs" / key
        temporary = link.with_name(f".{key}.{os.urandom(4).hex()}")
        os.symlink(os.path.relpath(target, link.parent), temporary)
        os.replace(temporary, link)

    def entries(self) -> list[tuple[float, int, str, Path]]:
        """Published venvs as ``(last used, size, key, path)``, least recently used first."""
        found = []
        for link in (self.root / "venvs").iterdir():
            path = self.published(link.name)
            if path is None:
                continue
            try:
                meta = json.loads((path / META).read_text())
                found.append(((path / META).stat().st_mtime, int(meta.get("size", 0)), link.name, path))
            except (OSError, ValueError):
                continue
        return sorted(found)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least-recently-used venvs not in use until under the cap; the keys removed."""
        entries = self.entries()
        total = sum(size for _, size, _, _ in entries)
        removed = []
        for _, size, key, path in entries:
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            use = FileLock(self.root / "locks" / f"{key}.use")
            try:
                if not use.try_acquire(fcntl.LOCK_EX):
                    continue
                (self.root / "venvs" / key).unlink()
                shutil.rmtree(path, ignore_errors=True)
            finally:
                use.close()
            total -= size
            removed.append(key)
            logger.info("evicted cached venv {} ({} MiB)", key, size // 2**20)
        self._sweep_unpublished()
        return removed

    def _sweep_unpublished(self) -> None:
        """Remove store dirs no link points to (a crashed build), unless a build holds their key."""
        linked = {p.resolve() for p in (self.root / "venvs").iterdir() if p.is_symlink()}
        for directory in (self.root / "store").iterdir():
            if directory.resolve() in linked:
                continue
            key = directory.name.rsplit("-", 1)[0]
            lock = FileLock(self.root / "locks" / f"{key}.build")
            try:
                if lock.try_acquire(fcntl.LOCK_EX):
                    shutil.rmtree(directory, ignore_errors=True)
            finally:
                lock.close()


def _write_json(path: Path, data: dict[str, object]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
