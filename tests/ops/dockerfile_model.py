"""The Dockerfile read by BuildKit's own parser (PyPI ``dockerfile``), as stages with inherited ENV.

No Docker engine runs on the build machines, so the image cannot be built in tests; this model is
what the tests check instead: instructions as Docker parses them, not as a regex guesses them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile


@dataclass
class Stage:
    """One ``FROM ... AS name`` block."""

    name: str
    base: str
    commands: list[dockerfile.Command] = field(default_factory=list)

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd.upper()]

    def last(self, cmd: str) -> dockerfile.Command | None:
        found = self.all(cmd)
        return found[-1] if found else None


@dataclass
class Model:
    """Global ARGs and stages, in file order."""

    args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        stage = self.stages[name]
        parents = self.chain(stage.base) if stage.base in self.stages else []
        return [*parents, stage]

    def env(self, name: str) -> dict[str, str]:
        """The ENV a container of stage ``name`` starts with (from this file, not the base image)."""
        out: dict[str, str] = {}
        for stage in self.chain(name):
            for command in stage.all("ENV"):
                values = command.value
                for key, raw in zip(values[0::2], values[1::2]):
                    out[key] = _unquote(raw)
        return out

    def effective(self, name: str, cmd: str) -> dockerfile.Command | None:
        """The last ``cmd`` (USER, ENTRYPOINT, CMD, ...) in effect for stage ``name``."""
        found = None
        for stage in self.chain(name):
            found = stage.last(cmd) or found
        return found


def _unquote(raw: str) -> str:
    parts = shlex.split(raw)
    return parts[0] if parts else ""


def load(path: Path) -> Model:
    """Parse ``path`` into global ARGs and named stages."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            value = command.value
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else f"stage{len(stages)}"
            current = Stage(name, value[0])
            stages[name] = current
        elif current is None:
            if command.cmd == "ARG":
                key, _, default = command.value[0].partition("=")
                args[key] = _unquote(default)
        else:
            current.commands.append(command)
    return Model(args, stages)
