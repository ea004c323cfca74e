"""maomao.journal: the journal's fields, the stderr fallback, folding, and the bounded queue."""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maomao.journal import (
    BoundedQueueHandler,
    JournalSink,
    StderrSink,
    Writer,
    journal_fields,
    make_handler,
    use_journal,
)


class FakeSink:
    """Collects records; ``gate`` cleared holds the writer thread in ``write`` (a stuck journal)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def write(self, record: logging.LogRecord) -> None:
        self.gate.wait()
        self.lines.append((record.name, record.levelno, record.getMessage()))

    def messages(self) -> list[str]:
        return [m for _, _, m in self.lines]


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"maomao.test{time.monotonic_ns()}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()


def attach(
    log: logging.Logger, sink: FakeSink, size: int = 100, fold: float = 5.0
) -> tuple[BoundedQueueHandler, Writer]:
    handler, writer = make_handler(sink, size=size, fold_seconds=fold)
    log.addHandler(handler)
    return handler, writer


def test_identical_lines_are_folded_until_a_different_one(logger: logging.Logger) -> None:
    sink = FakeSink()
    _, writer = attach(logger, sink)
    logger.info("one")
    for _ in range(4):
        logger.warning("store %s unreachable", "x")
    logger.warning("store x unreachable at info", )
    logger.info("one")
    logger.info("one")
    writer.stop()
    assert sink.messages() == [
        "one",
        "store x unreachable",
        "last message repeated 3 times",
        "store x unreachable at info",
        "one",
        "last message repeated 1 times",
    ]
    assert sink.lines[2][1] == logging.WARNING  # the count has the level of the line it repeats


def test_a_fold_is_flushed_after_a_few_seconds(logger: logging.Logger) -> None:
    sink = FakeSink()
    _, writer = attach(logger, sink, fold=0.3)
    for _ in range(3):
        logger.info("again")
    wait_for(lambda: len(sink.lines) == 2)
    assert sink.messages() == ["again", "last message repeated 2 times"]
    writer.stop()


def test_a_full_queue_drops_without_blocking_and_says_so(logger: logging.Logger) -> None:
    sink = FakeSink()
    sink.gate.clear()  # the journal is stuck
    handler, writer = attach(logger, sink, size=10)
    started = time.monotonic()
    for i in range(5000):
        logger.info("line %d", i)
    assert time.monotonic() - started < 2.0  # never waited for the sink
    sink.gate.set()
    writer.stop()
    messages = sink.messages()
    dropped = [m for m in messages if m.endswith("log lines dropped")]
    assert len(dropped) == 1, messages
    count = int(dropped[0].split()[0])
    kept = [m for m in messages if m.startswith("line ")]
    assert count + len(kept) == 5000 and count >= 5000 - 12
    assert messages[-1] == dropped[0] and kept[0] == "line 0"
    assert handler.take_dropped() == 0


def test_tracebacks_and_extras_reach_the_sink(logger: logging.Logger) -> None:
    records: list[logging.LogRecord] = []

    class Keep:
        def write(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, writer = make_handler(Keep())
    logger.addHandler(handler)
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("it failed", extra={"MAOMAO_TOOL": "alexa", "maomao_run_id": "r1"})
    writer.stop()
    fields = journal_fields(records[0])
    assert fields["MESSAGE"].startswith("it failed\nTraceback") and "ValueError: bad" in fields["MESSAGE"]
    assert fields["PRIORITY"] == "3" and fields["SYSLOG_IDENTIFIER"] == "maomao"
    assert fields["LOGGER"] == logger.name and fields["CODE_FUNC"] == "test_tracebacks_and_extras_reach_the_sink"
    assert fields["CODE_FILE"] == __file__ and int(fields["CODE_LINE"]) > 0
    assert fields["MAOMAO_TOOL"] == "alexa" and fields["MAOMAO_RUN_ID"] == "r1"


def test_journal_sink_sends_native_datagrams(tmp_path: Path, logger: logging.Logger) -> None:
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        handler, writer = make_handler(JournalSink(path))
        logger.addHandler(handler)
        logger.warning("two\nlines", extra={"MAOMAO_TOOL": "t"})
        data = server.recv(65536)
        writer.stop()
    assert b"PRIORITY=4\n" in data and b"SYSLOG_IDENTIFIER=maomao\n" in data and b"MAOMAO_TOOL=t\n" in data
    assert b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\n" in data
    assert f"LOGGER={logger.name}\n".encode() in data


def test_journal_sink_falls_back_to_stderr_when_journald_is_gone(tmp_path: Path, logger: logging.Logger) -> None:
    out = io.StringIO()
    handler, writer = make_handler(JournalSink(str(tmp_path / "none.sock"), StderrSink(out, prefix=True)))
    logger.addHandler(handler)
    logger.error("lost")
    writer.stop()
    assert out.getvalue() == f"<3>{logger.name}: lost\n"


def test_stderr_lines_keep_their_shape(logger: logging.Logger) -> None:
    out = io.StringIO()
    handler, writer = make_handler(StderrSink(out, prefix=True))
    logger.addHandler(handler)
    logger.info("ready: %s", "member m")
    logger.debug("multi\nline")
    writer.stop()
    assert out.getvalue() == f"<6>{logger.name}: ready: member m\n<7>{logger.name}: multi\n    line\n"


def test_use_journal(tmp_path: Path) -> None:
    path = tmp_path / "socket"
    assert not use_journal(str(path), {})
    path.touch()
    assert use_journal(str(path), {})
    assert use_journal(str(path), {"MAOMAO_LOG": "journal"})
    assert not use_journal(str(path), {"MAOMAO_LOG": "stderr"})
    assert not use_journal(str(path), {"MAOMAO_LOG": " STDERR "})
