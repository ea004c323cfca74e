"""Logging for the daemon: stderr lines with ``<N>`` syslog priority prefixes.

Under systemd, journald reads the prefix as the line's priority
(``SyslogLevelPrefix=``, on by default), so ``journalctl -p warning`` works
without a journal client library.  On a terminal the prefix is left out.
"""

from __future__ import annotations

import logging
import os
import sys

#: Python logging level -> syslog priority
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class PriorityFormatter(logging.Formatter):
    """``<N>logger: message``, N the syslog priority of the record's level."""

    def __init__(self, prefix: bool) -> None:
        super().__init__("%(name)s: %(message)s")
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\n    ")
        if not self.prefix:
            return text
        priority = PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 4)
        return f"<{priority}>{text}"


def setup_logging(level: str | None = None) -> None:
    """Send maomao's log records to stderr, once."""
    root = logging.getLogger("maomao")
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PriorityFormatter(prefix=not sys.stderr.isatty()))
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("MAOMAO_LOG_LEVEL", "INFO").upper())
    root.propagate = False
