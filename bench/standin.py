"""A stand-in for ``datahub ingest run -c -``: stamps its start, prints, then does what it is told.

Standard library only: it runs as ``bin/datahub`` of a fake bundled venv for the executor, from
the Celery task, and bare for the floor, always with the same stdin envelope
(``{"__recipe_yaml__": ..., "__secrets__": {...}}``). Its settings come from ``source.config``:

``stamps``  a directory: ``<tag>.start`` gets ``{"t": wall clock, "cpu": CPU used so far,
            "boot": wall clock when its interpreter was up and began to wait for its stdin}``
            just before the first line is printed (the CPU so far is the exec wrapper's plus
            this interpreter's start-up, so the floor's value is the bare start-up);
``tag``     the file name stem (the run id the executor injects wins when present);
``mode``    ``trivial`` (print, stamp ``<tag>.exit``, exit), ``sleep`` (``seconds``), or
            ``flood`` (``bytes`` of output in lines of ``line`` bytes written in 1 MiB
            blocks, the first line of each carrying the recipe's secret); ``<tag>.end`` then
            gets the flood's own start and end.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def _stamp(directory: str, name: str, payload: dict[str, float]) -> None:
    path = os.path.join(directory, name)
    with open(path + ".tmp", "w") as handle:
        json.dump(payload, handle)
    os.replace(path + ".tmp", path)


FLOOD_WRITE = 1 << 20
"""Bytes per write of a flood: a CLI's stdout into a pipe is block-buffered, and a producer
writing in large blocks keeps the pipe full, so the reader, not the writer, sets the pace."""


def _flood(total: int, line: int, secret: str) -> None:
    """``total`` bytes of ``line``-byte lines in writes of about ``FLOOD_WRITE`` bytes (whole
    lines); each write starts with one line that carries the secret."""
    plain = b"x" * (line - 1) + b"\n"
    marked = (b"secret " + secret.encode() + b" ").ljust(line - 1, b"y")[: line - 1] + b"\n"
    block = marked + plain * max(1, FLOOD_WRITE // line - 1)
    out = sys.stdout.buffer
    written = 0
    while written < total:
        out.write(block)
        written += len(block)
    out.flush()


def main() -> int:
    boot = time.time()  # the interpreter is up and waits for its input
    envelope = json.loads(sys.stdin.read())
    # Stamped once the input is here: a recipe spawned before its stdin (the executor pre-starts
    # it while the secrets resolve) has not started its work before that.
    start = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    recipe = json.loads(envelope["__recipe_yaml__"])
    config = recipe["source"]["config"]
    tag = str(recipe.get("run_id") or config["tag"]).rsplit(":", 1)[-1]
    cpu = usage.ru_utime + usage.ru_stime
    _stamp(config["stamps"], f"{tag}.start", {"t": start, "cpu": cpu, "boot": boot})
    print(f"bench stand-in {tag}: started", flush=True)
    mode = config.get("mode", "trivial")
    if mode == "trivial":
        _stamp(config["stamps"], f"{tag}.exit", {"t": time.time()})
    elif mode == "sleep":
        time.sleep(float(config["seconds"]))
    elif mode == "flood":
        secret = next(iter(envelope.get("__secrets__", {}).values()), "no-secret")
        began = time.time()
        _flood(int(config["bytes"]), int(config["line"]), secret)
        _stamp(config["stamps"], f"{tag}.end", {"began": began, "t": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
