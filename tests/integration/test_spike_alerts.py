"""Spike alerts through the real protocols: journald (read back with journalctl) and an HTTP webhook."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from maomao.config import load_config
from maomao.daemon.detection import Detection
from maomao.spikes.alerts import MESSAGE_ID, Alert, emit, journal_datagram
from tests.support.journald import Journald
from tests.support.webhook import Hook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def alert(tool: str, value: float = 900.0, deviation: float = 0.4634) -> Alert:
    return Alert(tool, "control", "20261130T030000Z", "lab-1", "control-2.csv", value, 615.0, deviation, 0.987,
                 "2026-11-30T03:00:01Z")  # fmt: skip


def test_an_alert_is_a_journal_entry_with_its_fields(journald: Journald) -> None:
    tool = f"tool-{uuid.uuid4().hex[:8]}"
    assert emit(alert(tool)) == "journal"
    (entry,) = journald.entries(f"MESSAGE_ID={MESSAGE_ID}", f"MAOMAO_TOOL={tool}")
    assert entry["PRIORITY"] == "4"
    assert entry["MAOMAO_METRIC"] == "control" and entry["MAOMAO_VALUE"] == "900"
    assert entry["MAOMAO_BASELINE"] == "615" and entry["MAOMAO_SCORE"] == "0.987000"
    assert entry["MAOMAO_RUN_ID"] == "20261130T030000Z" and entry["MAOMAO_POINT"] == "control-2.csv"
    assert entry["MESSAGE"].startswith(f"spike in {tool} control: 900 against a baseline of 615 (+46.3%")


def test_values_with_newlines_use_the_binary_encoding(journald: Journald) -> None:
    data = journal_datagram({"MESSAGE": "two\nlines", "A": "b"})
    assert data == b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\nA=b\n"
    tool = f"tool-{uuid.uuid4().hex[:8]}"
    odd = Alert(tool, "m", "r1", "m1", "line one\nline two", 1.0, 0.0, float("nan"), 1.0, "2026-11-30T03:00:01Z")
    emit(odd)
    (entry,) = journald.entries(f"MAOMAO_TOOL={tool}")
    assert entry["MAOMAO_POINT"] == "line one\nline two" and "from 0" in entry["MESSAGE"]


def test_without_a_journal_the_alert_is_a_warning_line_on_stderr(tmp_path: Path) -> None:
    out = io.StringIO()
    assert emit(alert("t"), journal=str(tmp_path / "no-socket"), stderr=out) == "stderr"
    line = out.getvalue()
    assert line.startswith("<4>maomao.spikes: spike in t control: 900") and line.count("\n") == 1


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook(fail_first=2)
    yield server
    server.close()


async def until(check: Callable[[], bool]) -> None:
    with trio.fail_after(20):
        while not check():  # noqa: ASYNC110 - another thread (the HTTP server) makes it true
            await trio.sleep(0.05)


def detection(tmp_path: Path, url: str, timeout: str = "2", retries: str = "3") -> Detection:
    config = load_config(environ={
        "MAOMAO_SPIKES_WEBHOOK": url, "MAOMAO_SPIKES_WEBHOOK_TIMEOUT": timeout,
        "MAOMAO_SPIKES_WEBHOOK_RETRIES": retries, "MAOMAO_DAEMON_STATE_DIR": str(tmp_path),
        "MAOMAO_MAOMAO_IMPORTDIR": str(tmp_path / "import"),
    })  # fmt: skip
    return Detection(config, None, None)


async def test_the_webhook_gets_json_and_is_retried(tmp_path: Path, hook: Hook) -> None:
    sender = detection(tmp_path, hook.url)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.webhook_loop)
        sender.queue(alert("hooked"))
        await until(lambda: bool(hook.received))
        nursery.cancel_scope.cancel()
    (payload,) = hook.received
    assert hook.attempts == 3  # two failures, then delivered
    assert payload["type"] == "maomao.spike" and payload["tool"] == "hooked" and payload["value"] == 900.0
    assert payload["baseline"] == 615.0 and payload["message"].startswith("spike in hooked control")


async def test_a_dead_webhook_never_holds_anything_up(tmp_path: Path) -> None:
    slow = Hook(delay=5.0)
    try:
        sender = detection(tmp_path, slow.url, timeout="0.5", retries="0")
        async with trio.open_nursery() as nursery:
            await nursery.start(sender.webhook_loop)
            began = trio.current_time()
            for _ in range(3):
                sender.queue(alert("slow"))  # queued at once, whatever the endpoint does
            assert trio.current_time() - began < 0.1
            await trio.sleep(2.0)  # each send times out after 0.5 s; nothing raises
            nursery.cancel_scope.cancel()
        assert slow.received == []
    finally:
        slow.close()
