"""structlog setup: one summary event per unit of work; JSON off a terminal, readable on one.

Every event passes through ``_redact``, which replaces any credential value in force with
``[redacted]``, so a secret that slips into an exception message still never reaches a log.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from pdgen_core.settings import get_settings

_configured = False


def _redact(_logger, _name, event_dict):
    secrets = get_settings().secret_values()
    if not secrets:
        return event_dict
    for k, v in list(event_dict.items()):
        event_dict[k] = _scrub(v, secrets)
    return event_dict


def _scrub(v, secrets):
    """``v`` with every secret replaced, inside dicts, lists and tuples too."""
    if isinstance(v, str):
        for s in secrets:
            if s and s in v:
                v = v.replace(s, "[redacted]")
        return v
    if isinstance(v, dict):
        return {_scrub(k, secrets): _scrub(x, secrets) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_scrub(x, secrets) for x in v)
    return v


class _StderrLogger:
    """Writes each event to whatever ``sys.stderr`` is at that moment. structlog's
    ``PrintLoggerFactory(file=sys.stderr)`` keeps the stream it saw at configure time, which
    pytest's capture (or a caller's redirect) may have closed since."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


def configure(json: bool | None = None, level: str | None = None) -> None:
    global _configured
    if json is None:
        json = os.environ.get("PDGEN_LOG_JSON") == "1" or not sys.stderr.isatty()
    lvl = getattr(logging, (level or os.environ.get("PDGEN_LOG_LEVEL", "INFO")).upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=lambda *args: _StderrLogger(),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(**bind):
    if not _configured:
        configure()
    return structlog.get_logger("pdgen").bind(**bind)
