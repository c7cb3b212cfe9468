"""Structured logging for every CallFS process (node, operator, CSI plugin, mount daemon and mount service).

:func:`configure_logging` renders every record — ours, aiohttp's, kopf's, libraries' — as one JSON object per
line or as console text. Fields passed with ``extra={...}`` to a standard-library logger, key-value pairs given
to a structlog logger, and values bound with ``structlog.contextvars.bound_contextvars`` all become fields of
the line.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

LOG_LEVELS = ("debug", "info", "warning", "error")
"""Accepted ``level`` values (any letter case)."""
LOG_FORMATS = ("json", "console")
"""Accepted ``fmt`` values."""


def configure_logging(level: str = "info", fmt: str = "console", *, stream: TextIO | None = None) -> None:
    """Route the standard library's logging through structlog, for the whole process.

    Args:
        level: lowest level written, one of :data:`LOG_LEVELS` (case-insensitive).
        fmt: ``json`` — one JSON object per line with at least ``timestamp`` (ISO 8601, UTC), ``level``
            (lower case), ``logger`` (the logger's name) and ``event`` (the formatted message), plus every
            ``extra`` field, bound context variable and, for failures, ``exception`` (the traceback as text);
            ``console`` — the same fields as readable ``key=value`` text.
        stream: where lines go (default: ``sys.stderr``).

    The root logger's handlers are replaced by one handler on ``stream``, so calling this again reconfigures.
    aiohttp's own access log is silenced (the node writes one structured line per request itself).

    Raises:
        ValueError: an unknown ``level`` or ``fmt``.
    """
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(LOG_FORMATS)}")
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[structlog.typing.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        final.append(structlog.dev.ConsoleRenderer(colors=False))
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # ExtraAdder: a standard-library record's ``extra`` fields become fields of the line.
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=final,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
