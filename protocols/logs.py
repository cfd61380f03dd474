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

Under systemd (stderr is the journal: ``$JOURNAL_STREAM`` names it) every
line starts with its syslog priority, ``<4>`` for a warning, which journald
takes off and records, so ``journalctl -p warning -u meterhub`` shows the
warnings and errors alone. A service's start-up line (:func:`announce`: where
it listens, which store) goes through the same handler, so a JSON log holds
nothing but JSON.
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
HANDLER_NAME = "meterhub"
"""The name of the root handler :func:`configure_logging` installs (:func:`announce` uses it)."""


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


SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
                   logging.INFO: 6, logging.DEBUG: 7}
"""sd-daemon(3) priority prefixes by logging level (journald strips and records them)."""


class JournalPriority(logging.Formatter):
    """Prefix every line of another formatter's output with the record's ``<priority>``.

    Every line, not only the first: journald makes each line of a traceback an
    entry of its own, and each should keep the record's priority.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def _priority(levelno: int) -> int:
    for level, priority in sorted(SYSLOG_PRIORITY.items(), reverse=True):
        if levelno >= level:
            return priority
    return SYSLOG_PRIORITY[logging.DEBUG]


def stderr_is_journal() -> bool:
    """Whether stderr is the journal's stream: ``$JOURNAL_STREAM`` is its ``device:inode``."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        stat = os.fstat(sys.stderr.fileno())
        return (int(device), int(inode)) == (stat.st_dev, stat.st_ino)
    except (ValueError, OSError, AttributeError):
        return False


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
    if not isinstance(handler, RichHandler) and stderr_is_journal():
        handler.setFormatter(JournalPriority(handler.formatter or logging.Formatter()))
    handler.set_name(HANDLER_NAME)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def announce(console: Console, message: str, *, logger: str = "meterhub") -> None:
    """A service's start-up line, shown whatever the log level: where it listens, what it uses.

    At a terminal it is printed for the person there; otherwise it is an
    ``info`` record through the configured handler, bypassing the level, so
    a JSON log stays JSON and the journal gets it with a timestamp.
    """
    ours = [h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME]
    if not ours or isinstance(ours[0], RichHandler):
        console.print(message, markup=False, highlight=False)
        return
    ours[0].handle(logging.LogRecord(logger, logging.INFO, __file__, 0, message, None, None))
