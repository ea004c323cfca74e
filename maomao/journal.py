"""Logging for the daemon: to journald (its native protocol), else stderr lines with ``<N>`` prefixes.

With journald's socket (``/run/systemd/journal/socket``) there, every record
is one datagram of structured fields: ``MESSAGE``, ``PRIORITY`` (from the
level), ``SYSLOG_IDENTIFIER=maomao``, ``CODE_FILE``/``CODE_LINE``/
``CODE_FUNC``, ``LOGGER`` (the logger's name) and the record's
``MAOMAO_*`` extras (``log.info(..., extra={"MAOMAO_TOOL": name})``), so
``journalctl SYSLOG_IDENTIFIER=maomao MAOMAO_TOOL=alexa`` finds them.
Without it, or with ``MAOMAO_LOG=stderr`` in the environment, each record is
one ``<N>logger: message`` line on stderr (journald reads the prefix as the
line's priority, ``SyslogLevelPrefix=``, on by default); on a terminal the
prefix is left out.

Logging never blocks the daemon: a record goes into a bounded queue that a
thread of its own empties into the journal or stderr.  While the queue is
full, records are dropped and counted, and ``N log lines dropped`` follows
once it drains.  A run of identical lines (same logger, level and text) is
folded into the first one and ``last message repeated N times``, written
when a different line comes or a few seconds later.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import logging.handlers
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TextIO

from maomao.spikes.alerts import JOURNAL_SOCKET, journal_datagram

#: Python logging level -> syslog priority
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

#: how many records may wait for the writer thread before new ones are dropped
QUEUE_SIZE = 10000
#: how long a run of identical lines may stay folded before its count is written
FOLD_SECONDS = 5.0
#: a MESSAGE longer than this is cut when journald refuses the datagram as too large
LONGEST_MESSAGE = 48 * 1024


def priority_of(levelno: int) -> int:
    """The syslog priority of a logging level."""
    return PRIORITIES.get(levelno, 6 if levelno < logging.WARNING else 4)


class PriorityFormatter(logging.Formatter):
    """``<N>logger: message``, N the syslog priority of the record's level."""

    def __init__(self, prefix: bool) -> None:
        super().__init__("%(name)s: %(message)s")
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\n    ")
        if not self.prefix:
            return text
        return f"<{priority_of(record.levelno)}>{text}"


class Sink(Protocol):
    """Where the writer thread puts each record (already formatted: ``record.msg`` is the text)."""

    def write(self, record: logging.LogRecord) -> None: ...


class StderrSink:
    """One ``<N>logger: message`` line per record."""

    def __init__(self, stream: TextIO | None = None, prefix: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        if prefix is None:
            prefix = not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.formatter = PriorityFormatter(prefix=prefix)

    def write(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.formatter.format(record) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed: nowhere left to say it


def journal_fields(record: logging.LogRecord, identifier: str = "maomao") -> dict[str, str]:
    """A record's journal entry."""
    fields = {
        "MESSAGE": record.getMessage(),
        "PRIORITY": str(priority_of(record.levelno)),
        "SYSLOG_IDENTIFIER": identifier,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName or "",
    }
    for name, value in vars(record).items():
        key = name.upper()
        if (key.startswith("MAOMAO_") or key == "MESSAGE_ID") and key.replace("_", "").isalnum() and key.isascii():
            fields[key] = str(value)
    return fields


class JournalSink:
    """One native-protocol datagram per record; a record journald refuses goes to ``fallback``."""

    def __init__(self, path: str = JOURNAL_SOCKET, fallback: Sink | None = None) -> None:
        self.path = path
        self.fallback = fallback or StderrSink(prefix=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def write(self, record: logging.LogRecord) -> None:
        fields = journal_fields(record)
        try:
            self.sock.sendto(journal_datagram(fields), self.path)
            return
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                self.fallback.write(record)
                return
        # too large for one datagram: cut the message and say so
        message = fields["MESSAGE"]
        fields["MESSAGE"] = message[:LONGEST_MESSAGE] + f"\n… ({len(message) - LONGEST_MESSAGE} characters cut)"
        try:
            self.sock.sendto(journal_datagram(fields), self.path)
        except OSError:
            self.fallback.write(record)


class BoundedQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that never waits: a record that finds the queue full is dropped and counted."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.records: queue.Queue[logging.LogRecord | None] = queue.Queue(size)
        super().__init__(self.records)
        self.setFormatter(logging.Formatter("%(message)s"))
        self._lock = threading.Lock()
        self._dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        prepared: logging.LogRecord = super().prepare(record)  # the text, traceback included, in msg
        prepared.stack_info = None
        return prepared

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.records.put_nowait(record)
        except queue.Full:
            with self._lock:
                self._dropped += 1

    def take_dropped(self) -> int:
        """How many records were dropped since the last call."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        return dropped


class Writer:
    """The thread that empties a :class:`BoundedQueueHandler` into a sink, folding repeated lines."""

    def __init__(self, handler: BoundedQueueHandler, sink: Sink, fold_seconds: float = FOLD_SECONDS) -> None:
        self.handler = handler
        self.sink = sink
        self.fold_seconds = fold_seconds
        self._last: logging.LogRecord | None = None
        self._repeats = 0
        self._folding_since = 0.0
        self._thread = threading.Thread(target=self._run, name="maomao-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread."""
        if not self._thread.is_alive():
            return
        try:
            self.handler.records.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    @staticmethod
    def _key(record: logging.LogRecord) -> tuple[str, int, str]:
        return record.name, record.levelno, record.getMessage()

    def _flush_repeats(self) -> None:
        if self._repeats and self._last is not None:
            last = self._last
            self.sink.write(
                logging.makeLogRecord(
                    {
                        **vars(last),
                        "msg": f"last message repeated {self._repeats} times",
                        "args": None,
                        "created": time.time(),
                    }
                )
            )
        self._repeats = 0

    def _report_drops(self) -> None:
        dropped = self.handler.take_dropped()
        if dropped:
            self._flush_repeats()
            self._last = None
            self.sink.write(
                logging.makeLogRecord(
                    {
                        "name": "maomao.journal",
                        "levelno": logging.WARNING,
                        "levelname": "WARNING",
                        "msg": f"{dropped} log lines dropped",
                        "pathname": __file__,
                        "funcName": "_report_drops",
                    }
                )
            )

    def _take(self, record: logging.LogRecord) -> None:
        if self._last is not None and self._key(record) == self._key(self._last):
            if not self._repeats:
                self._folding_since = time.monotonic()
            self._repeats += 1
            if time.monotonic() - self._folding_since >= self.fold_seconds:
                self._flush_repeats()
            return
        self._flush_repeats()
        self._last = record
        self.sink.write(record)

    def _run(self) -> None:
        records = self.handler.records
        while True:
            timeout = None
            if self._repeats:
                timeout = max(0.001, self.fold_seconds - (time.monotonic() - self._folding_since))
            try:
                record = records.get(timeout=timeout)
            except queue.Empty:
                self._safely(self._flush_repeats)
                continue
            if record is None:
                self._safely(self._flush_repeats)
                self._safely(self._report_drops)
                return
            self._safely(self._take, record)
            if records.empty():
                # a record dropped means the queue was full: it has drained now
                self._safely(self._report_drops)

    @staticmethod
    def _safely(action: Callable[..., None], *args: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a sink's fault must not end logging
            action(*args)


def use_journal(path: str = JOURNAL_SOCKET, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to log to journald: its socket is there and ``MAOMAO_LOG`` does not say ``stderr``."""
    environ = os.environ if environ is None else environ
    if environ.get("MAOMAO_LOG", "").strip().lower() == "stderr":
        return False
    return os.path.exists(path)


def make_handler(
    sink: Sink, *, size: int = QUEUE_SIZE, fold_seconds: float = FOLD_SECONDS
) -> tuple[BoundedQueueHandler, Writer]:
    """A bounded queue handler and its started writer thread, writing into ``sink``."""
    handler = BoundedQueueHandler(size)
    writer = Writer(handler, sink, fold_seconds)
    writer.start()
    return handler, writer


def setup_logging(
    level: str | None = None,
    *,
    journal: str = JOURNAL_SOCKET,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send maomao's log records to journald or stderr, once."""
    environ = os.environ if environ is None else environ
    root = logging.getLogger("maomao")
    if root.handlers:
        return
    sink: Sink = JournalSink(journal) if use_journal(journal, environ) else StderrSink()
    handler, writer = make_handler(sink)
    root.addHandler(handler)
    root.setLevel(level or environ.get("MAOMAO_LOG_LEVEL", "INFO").upper())
    root.propagate = False
    atexit.register(writer.stop)
