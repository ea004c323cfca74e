"""Daemon logging into a real journald (the ``journald`` fixture), read back with ``journalctl``."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.cli import clean_env
from tests.support.journald import Journald

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCRIPT = """
import logging, sys
from maomao.journal import setup_logging
setup_logging()
log = logging.getLogger(sys.argv[1])
log.info("ready: %s", "member m")
log.debug("not shown at INFO")
for _ in range(5):
    log.warning("store unreachable", extra={"MAOMAO_TOOL": sys.argv[2]})
log.error("two\\nlines")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("it failed")
"""


def log_from_script(tmp_path: Path, logger: str, tool: str, extra: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, logger, tool], env=clean_env(tmp_path, extra), cwd=Path.cwd(),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stderr


def test_records_are_structured_journal_entries(journald: Journald, tmp_path: Path) -> None:
    logger = f"maomao.test{uuid.uuid4().hex[:8]}"
    tool = f"t{uuid.uuid4().hex[:8]}"
    assert log_from_script(tmp_path, logger, tool) == ""  # nothing on stderr: it all went to the journal
    entries = journald.entries("SYSLOG_IDENTIFIER=maomao", f"LOGGER={logger}", count=5)
    got = [(e["PRIORITY"], e["MESSAGE"]) for e in entries]
    assert got[:4] == [
        ("6", "ready: member m"),
        ("4", "store unreachable"),
        ("4", "last message repeated 4 times"),
        ("3", "two\nlines"),
    ], got
    assert got[4][0] == "3" and got[4][1].startswith("it failed\nTraceback") and len(got) == 5
    ready = entries[0]
    assert ready["CODE_FILE"] == "<string>" and ready["CODE_FUNC"] == "<module>" and ready["CODE_LINE"] == "6"
    tagged = journald.entries(f"MAOMAO_TOOL={tool}", count=2)  # the count keeps the fields of its line
    assert [e["MESSAGE"] for e in tagged] == ["store unreachable", "last message repeated 4 times"]
    assert journald.entries("SYSLOG_IDENTIFIER=maomao", f"LOGGER={logger}", "PRIORITY=4", count=2)


def test_maomao_log_stderr_keeps_the_prefixed_lines(journald: Journald, tmp_path: Path) -> None:
    logger = f"maomao.test{uuid.uuid4().hex[:8]}"
    err = log_from_script(tmp_path, logger, "t", {"MAOMAO_LOG": "stderr"})
    lines = err.splitlines()
    assert lines[:5] == [
        f"<6>{logger}: ready: member m",
        f"<4>{logger}: store unreachable",
        f"<4>{logger}: last message repeated 4 times",
        f"<3>{logger}: two",
        "    lines",
    ], err
    assert lines[5] == f"<3>{logger}: it failed" and lines[-1] == "    ZeroDivisionError: division by zero"
    assert journald.entries(f"LOGGER={logger}", timeout=1.0, count=1) == []
