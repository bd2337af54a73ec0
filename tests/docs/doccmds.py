"""The shell commands a document shows: fenced ``sh`` blocks, split into commands.

Docs-as-tests read the commands from the documents themselves, so a change to a document
changes what the tests run (or makes a test that mirrors it fail), never silently drifts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
SHELLS = ("sh", "bash", "shell", "console")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, under which heading, and its text (indent removed)."""

    path: Path
    heading: str
    text: str

    def commands(self) -> list[str]:
        """Commands of the block: continuation lines joined, comments and heredoc bodies dropped."""
        return split_commands(self.text)


def blocks(path: Path, langs: tuple[str, ...] = SHELLS) -> list[Block]:
    """The fenced blocks in ``langs`` of the document at ``path``, in order."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group("lang") not in langs:
            continue
        indent = match.group("indent")
        body = "".join(line[len(indent):] if line.startswith(indent) else line
                       for line in match.group("body").splitlines(keepends=True))
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.MULTILINE)
        found.append(Block(path, headings[-1] if headings else "", body))
    return found


def block_under(path: Path, heading: str, index: int = 0) -> Block:
    """The ``index``-th shell block under the heading ``heading``; fails clearly when gone."""
    under = [b for b in blocks(path) if b.heading == heading]
    assert len(under) > index, f"{path.name}: no shell block #{index} under the heading {heading!r}"
    return under[index]


def split_commands(text: str) -> list[str]:
    """Each command of a shell snippet on one line, without comments; heredocs kept whole."""
    commands: list[str] = []
    current = ""
    heredoc: str | None = None
    for raw in text.splitlines():
        if heredoc is not None:
            current += "\n" + raw
            if raw.strip() == heredoc:
                commands.append(current)
                current, heredoc = "", None
            continue
        line = _strip_comment(raw).rstrip()
        if not line and not current:
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current = (current + line.strip()) if current else line.strip()
        marker = re.search(r"<<-?'?\"?(\w+)'?\"?", current)
        if marker:
            heredoc = marker.group(1)
            continue
        commands.append(current)
        current = ""
    if current:
        commands.append(current)
    return commands


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes, after whitespace)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line
