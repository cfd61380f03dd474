"""The log line every meterhub process writes, so edge and hub logs read (and parse) alike.

At a terminal a person gets rich's readable lines; under a service manager
each record is one plain line with a UTC timestamp, level and logger, ready
for the journal or a log shipper. Secrets never reach a log line: callers log
key ids and paths, never key material or passphrases.
"""

from __future__ import annotations

import logging
import sys
import time

from rich.console import Console
from rich.logging import RichHandler

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, console: Console | None = None) -> None:
    """Set the root logger once per process: ``level`` is debug, info, warning or error."""
    console = console or Console(stderr=True)
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter(PLAIN_FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
