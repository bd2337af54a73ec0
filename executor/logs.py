"""Logging setup (loguru): readable lines on a terminal, JSON lines otherwise.

Every record carries ``pool`` and ``request`` (``-`` when there is none): actors bind them
with ``logger.bind(pool=..., request=...)``. Messages never include secret values; the
sandbox masks recipe output before it reaches a logger.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[pool]}</cyan>/<cyan>{extra[request]}</cyan> {extra[component]}: {message}"
)


def _defaults(record: Record) -> None:
    extra = record["extra"]
    extra.setdefault("pool", "-")
    extra.setdefault("request", "-")
    extra.setdefault("component", record["name"] or "-")


def _json_sink(stream: TextIO) -> Any:
    def write(message: Message) -> None:
        record = message.record
        extra = {k: v for k, v in record["extra"].items() if k not in ("pool", "request", "component")}
        line: dict[str, Any] = {
            "ts": record["time"].isoformat(),
            "level": record["level"].name,
            "msg": record["message"],
            "pool": record["extra"]["pool"],
            "request": record["extra"]["request"],
            "component": record["extra"]["component"],
        }
        if extra:
            line["extra"] = {k: str(v) for k, v in extra.items()}
        if record["exception"] is not None:
            exc = record["exception"]
            line["error"] = f"{exc.type.__name__ if exc.type else 'Error'}: {exc.value}"
        stream.write(json.dumps(line) + "\n")
        stream.flush()

    return write


class _InterceptHandler(logging.Handler):
    """Route stdlib logging (boto3, urllib3, pykka) into loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).bind(component=record.name).log(level, record.getMessage())


def setup_logging(fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure the one loguru sink; ``fmt`` is ``auto``, ``json`` or ``text``."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    logger.remove()
    logger.configure(patcher=_defaults)
    if use_json:
        logger.add(_json_sink(out), level=level, enqueue=False, catch=True)
    else:
        logger.add(out, level=level, format=TEXT_FORMAT, colorize=out.isatty(), catch=True)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
