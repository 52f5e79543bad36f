"""structlog setup: one summary event per unit of work; JSON off a terminal, readable on one.

Every event passes through ``_redact``, which replaces any credential value in force with
``[redacted]``, so a secret that slips into an exception message still never reaches a log.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

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


# Library loggers whose chatter is not the product's output: Ray's "Token authentication is
# enabled", Ray Data's progress lines every 10 s, deprecation warnings, transformers' and vLLM's
# notices. A fresh-clone run printed about 170 such lines, some on stdout (issue 20).
CHATTY = ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve", "vllm", "transformers", "py.warnings",
          "filelock", "urllib3", "botocore")
_library_log: Path | None = None
_library_handler: logging.FileHandler | None = None
_native_quiet = False        # set by the CLI: this process may take over file descriptor 2
_native_redirected = False


# Ray Data's logging without its console handler: its progress and "execution finished" lines go to
# the Ray session's ray-data.log only (Ray Data's default, less the console). Written to the logs
# folder, as RAY_DATA_LOGGING_CONFIG wants a file.
RAY_DATA_LOGGING = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"ray": {"format": "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"}},
    "handlers": {"file": {"class": "ray.data._internal.logging.SessionFileHandler", "formatter": "ray",
                          "filename": "ray-data.log"}},
    "loggers": {"ray.data": {"level": "DEBUG", "handlers": ["file"], "propagate": False}},
}


def _ray_data_config(folder: Path) -> Path:
    import yaml

    path = folder / "ray_data_logging.yaml"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(yaml.safe_dump(RAY_DATA_LOGGING))
        tmp.replace(path)
    return path


# Loggers that speak while ray.init resets the "ray" logger's handlers (so the file handler set
# on "ray" beforehand misses them): a filter on the logger itself still sees their records.
_RESET_BY_RAY_INIT = ("ray._private.authentication.authentication_token_setup",)


class _ToFile(logging.Filter):
    """Writes the record to the library log instead of letting it reach any handler."""

    def __init__(self, handler: logging.Handler):
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        self.handler.handle(record)
        return False


def library_log_path() -> Path | None:
    """Where library chatter goes in this process (None: to stderr, ``--verbose``)."""
    return _library_log


def quiet_libraries() -> Path | None:
    """Send the chatter of ``CHATTY`` loggers and of ``warnings`` to a log file under the node
    cache (``<cache>/logs/``), unless ``PDGEN_VERBOSE`` is set; return the file. pdgen's own
    events stay on stderr. Call it again after a library configured its loggers (Ray Data does
    on import): each process keeps one file."""
    global _library_log, _library_handler
    if get_settings().verbose:
        return None
    if _library_handler is None:
        logs = get_settings().cache_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        _library_log = logs / f"pdgen-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        _library_handler = logging.FileHandler(_library_log, encoding="utf-8", delay=True)
        _library_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.captureWarnings(True)
    os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", str(_ray_data_config(_library_log.parent)))
    if "ray.data" in sys.modules:  # configured at its import: again, from the file above
        from ray.data._internal.logging import configure_logging

        configure_logging()
    for name in _RESET_BY_RAY_INIT:
        lg = logging.getLogger(name)
        if not any(isinstance(f, _ToFile) for f in lg.filters):
            lg.addFilter(_ToFile(_library_handler))
    for name in CHATTY:
        if name == "ray.data":
            continue   # its own configuration (above) sends it to the session's ray-data.log
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if h is not _library_handler and isinstance(h, logging.StreamHandler) \
                    and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
        if _library_handler not in lg.handlers:
            lg.addHandler(_library_handler)
        lg.propagate = False
    return _library_log


def _stderr_is_fd2() -> bool:
    """Whether ``sys.stderr`` is this process's file descriptor 2 (not a caller's replacement)."""
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation is an OSError
        return False


def allow_native_redirect() -> None:
    """The ``pdgen`` command owns this process's stderr: ``native_stderr_to_library_log`` may
    take its file descriptor. A library caller (a notebook, pytest, Typer's CliRunner, whose
    ``sys.stderr`` is not file descriptor 2) keeps its stderr untouched."""
    global _native_quiet
    _native_quiet = _stderr_is_fd2()


def native_stderr_to_library_log() -> Path | None:
    """Ray's C++ core worker writes its own lines (``[... E 123 123] core_worker.cc:...`` about
    actor restarts, shutdown) straight to file descriptor 2, past every Python logger. Point fd 2
    at the library log and keep Python's ``sys.stderr`` on the original stream, so pdgen's events,
    errors and tracebacks still reach the caller and only native writes move. Processes started
    from here (an in-process Ray head's daemons) inherit the file. Only in a ``pdgen`` command
    (``allow_native_redirect``), once, and not with ``--verbose``; returns the file or None."""
    global _native_redirected
    if not _native_quiet or get_settings().verbose:
        return None
    if _native_redirected:
        return _library_log
    if not _stderr_is_fd2():   # redirected by a caller since: leave it
        return None
    path = quiet_libraries()
    if path is None:
        return None
    sys.stderr.flush()
    original = sys.stderr
    saved = os.dup(2)
    sys.stderr = open(saved, "w", encoding=original.encoding or "utf-8", errors="backslashreplace",
                      buffering=1, closefd=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    _native_redirected = True
    return path
