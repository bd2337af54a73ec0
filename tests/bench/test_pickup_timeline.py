"""``bench.pickup_timeline``'s own parts: the probe's wrappers stamp what they are told to, and
a pickup's steps are the first stamp of each name inside its window."""

from __future__ import annotations

import os
from pathlib import Path

from bench.pickup_timeline import _after, _before, _events


class Worker:
    def receive(self, count: int) -> list[int]:
        return list(range(count))

    def start(self, name: str) -> str:
        return name.upper()


def test_the_wrappers_stamp_as_told_and_keep_the_result(tmp_path: Path) -> None:
    events = tmp_path / "events"
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _after(Worker, "receive", fd, "received")  # only a true (non-empty) answer
        _before(Worker, "start", fd, "starting", lambda args: args[1] == "task")
        worker = Worker()
        assert worker.receive(0) == [] and worker.receive(2) == [0, 1]
        assert worker.start("other") == "OTHER" and worker.start("task") == "TASK"
    finally:
        os.close(fd)
    names = [line.split()[0] for line in events.read_text().splitlines()]
    assert names == ["received", "starting"]


def test_a_pickup_takes_the_first_stamp_of_each_name_in_its_window(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.write_text("receive 9.0\nreceive 10.5\ntask 11.0\nreceive 12.0\ntask 30.0\n")
    assert _events(events, 10.0, 20.0) == {"receive": 10.5, "task": 11.0}
