"""What a world left on disk, read for the secret searches.

The executor hands a task's result over before it removes the task's work dir (issue 12), so
a search that starts right after a result may meet a directory as it is being removed. What
vanishes during the walk was not left behind; everything else is read. Links are not followed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path


def files_left(root: Path, skip: Callable[[Path], bool] = lambda _: False) -> Iterator[Path]:
    """Every regular file under ``root`` (sorted per folder) whose path ``skip`` does not reject."""
    for folder, dirs, files in os.walk(root):  # a folder gone mid-walk is passed over
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if not skip(path) and path.is_file() and not path.is_symlink():
                yield path


def text_left(root: Path, skip: Callable[[Path], bool] = lambda _: False) -> list[str]:
    """The text of every file ``files_left`` yields that is still there to read."""
    texts = []
    for path in files_left(root, skip):
        try:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
        except FileNotFoundError:
            continue  # removed between the walk and the read: not left behind
    return texts
