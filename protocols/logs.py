"""The log line every meterhub process writes, so edge and hub logs read (and parse) alike.

At a terminal a person gets rich's readable lines; under a service manager
each record is one plain line with a UTC timestamp, level and logger, ready
for the journal. With ``json`` (``--log-format json`` or
``METERHUB_LOG_FORMAT=json``) each record is one JSON object per line, for a
log shipper that should not have to guess where a message ends::

    {"ts": "2026-11-02T07:15:04.112Z", "level": "warning", "logger": "hub.ingest",
     "message": "ALARM gw-0001: refused seq 41–60 (bad_signature): …", "collector": "gw-0001"}

``ts`` is UTC with milliseconds; a traceback is in ``exc_info`` (text), and
any ``extra={…}`` a caller passes becomes a field of its own. Secrets never
reach a log line: callers log key ids and paths, never key material or
passphrases.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMAT_ENV = "METERHUB_LOG_FORMAT"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
"""What every LogRecord has; anything else on a record came from ``extra`` and is kept."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, exc_info, and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format_from_env() -> LogFormat:
    """``$METERHUB_LOG_FORMAT`` (text or json), text when unset or unknown."""
    try:
        return LogFormat(os.environ.get(LOG_FORMAT_ENV, LogFormat.TEXT).strip().lower())
    except ValueError:
        return LogFormat.TEXT


def configure_logging(level: str, console: Console | None = None,
                      fmt: LogFormat | str | None = None) -> None:
    """Set the root logger once per process: ``level`` is debug, info, warning or error.

    ``fmt`` is ``text`` (rich at a terminal, plain lines otherwise) or ``json``;
    ``None`` takes ``$METERHUB_LOG_FORMAT``, so a command without the option
    (``meter-sim``) still follows the service's setting.
    """
    chosen = log_format_from_env() if fmt is None else LogFormat(fmt)
    console = console or Console(stderr=True)
    handler: logging.Handler
    if chosen is LogFormat.JSON:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter(PLAIN_FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
