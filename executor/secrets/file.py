"""The file secret store: one file per secret, as a Kubernetes secret or CSI volume mounts them.

A Kubernetes mount holds ``NAME -> ..data/NAME`` symlinks and ``..data``/``..<timestamp>``
entries: reading ``<basedir>/NAME`` follows the links to the current version, and names
starting with a dot are never secrets. One trailing newline (what ``echo`` or an editor adds)
is stripped; anything else is the value as written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from executor.errors import BadInputError

MAX_SECRET_BYTES = 1024 * 1024


class FileStore:
    """Reads ``<basedir>/<NAME>`` for each requested name."""

    name = "file"

    def __init__(self, basedir: str | os.PathLike[str]) -> None:
        self.basedir = Path(basedir)

    def get(self, names: Sequence[str]) -> dict[str, str]:
        """Values of the names that exist as regular files (after following links)."""
        values: dict[str, str] = {}
        for name in names:
            _check_name(name)
            if name.startswith("."):
                continue  # ..data, ..2024_01_01..., dotfiles: mount machinery, not secrets
            value = self._read(name)
            if value is not None:
                values[name] = value
        return values

    def _read(self, name: str) -> str | None:
        path = self.basedir / name
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BadInputError(f"secret file {name!r} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            return None  # a directory or a device is not a secret
        if info.st_size > MAX_SECRET_BYTES:
            raise BadInputError(f"secret file {name!r} is larger than {MAX_SECRET_BYTES} bytes")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # rotated away between stat and read
        except OSError as exc:
            raise BadInputError(f"secret file {name!r} cannot be read: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInputError(f"secret file {name!r} is not UTF-8 text") from None
        return _strip_one_newline(text)


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or os.sep in name:
        raise BadInputError(f"secret name {name!r} is not a plain file name")


def _strip_one_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text
