"""The transfer progress renderer (fake clock), ``dataset clone``'s lines, and the local clone record."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from maomao.cli.progress import TransferMeter, human_bytes
from maomao.clones import Clone, Head, Outcome, _remember, _save, load, record_path

pytestmark = pytest.mark.timeout(30)


@dataclass
class Stats:
    total_objects: int = 0
    received_objects: int = 0
    indexed_objects: int = 0
    total_deltas: int = 0
    indexed_deltas: int = 0
    received_bytes: int = 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- progress -----------------------------------------------------------------------------


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1024) == "1.0 KiB"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 1024**2) == "5.0 MiB"
    assert human_bytes(3.25 * 1024**3) == "3.2 GiB"
    assert human_bytes(2 * 1024**6) == "2048.0 PiB"


def test_plain_lines_at_most_once_a_second_and_a_summary() -> None:
    out, clock = io.StringIO(), Clock()
    meter = TransferMeter(out, clock=clock)
    assert meter.tty is False  # StringIO is not a terminal
    meter(Stats(100, 0, 0, 0, 0, 0))
    for step in range(1, 11):  # 0.25 s apart, 1 KiB each
        clock.now += 0.25
        meter(Stats(100, step * 10, step * 10, 0, 0, step * 1024))
    lines = out.getvalue().splitlines()
    assert lines == [
        "receiving objects: 40% (40/100), 4.0 KiB | 4.0 KiB/s",
        "receiving objects: 80% (80/100), 8.0 KiB | 4.0 KiB/s",
    ]
    meter.finish()
    assert out.getvalue().splitlines()[-1] == "received 100 objects, 10.0 KiB in 2.5 s (4.0 KiB/s)"
    assert "\r" not in out.getvalue()


def test_rate_is_over_the_last_seconds() -> None:
    clock = Clock()
    meter = TransferMeter(io.StringIO(), clock=clock)
    meter(Stats(10, 0, received_bytes=0))
    assert meter.rate() == 0.0  # no time has passed
    for second in range(1, 6):  # fast at first ...
        clock.now += 1
        meter(Stats(10, 1, received_bytes=second * 10 * 1024))
    for second in range(1, 6):  # ... then 1 KiB/s
        clock.now += 1
        meter(Stats(10, 1, received_bytes=50 * 1024 + second * 1024))
    assert meter.rate() == pytest.approx(1024)


def test_terminal_redraws_one_line_and_ends_it() -> None:
    out, clock = Terminal(), Clock()
    meter = TransferMeter(out, clock=clock)
    assert meter.tty is True
    meter(Stats(1000, 0, received_bytes=0))
    clock.now += 0.05
    meter(Stats(1000, 5, received_bytes=100))  # too soon: not drawn
    clock.now += 0.1
    meter(Stats(1000, 10, received_bytes=2048))
    text = out.getvalue()
    assert text.count("\r") == 2 and "\n" not in text
    assert text.endswith("\rreceiving objects: 1% (10/1000), 2.0 KiB | 13.3 KiB/s")
    # a shorter line is padded over the longer one
    clock.now += 1
    meter(Stats(1000, 1000, 1000, 20, 5, 3 * 1024**2))
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("resolving deltas: 25% (5/20), 3.0 MiB received")
    clock.now += 1
    meter(Stats(1000, 1000, 1000, 20, 20, 3 * 1024**2))  # finished: drawn at once
    meter.finish()
    assert out.getvalue().endswith("\rresolving deltas: 100% (20/20), 3.0 MiB received, done.\n")
    assert "received 1000 objects" not in out.getvalue()  # no summary line on a terminal


def test_terminal_abort_wipes_the_line() -> None:
    out, clock = Terminal(), Clock()
    meter = TransferMeter(out, clock=clock)
    meter(Stats(10, 1, received_bytes=10))
    drawn = out.getvalue()
    meter.abort()
    assert out.getvalue() == drawn + "\r" + " " * (len(drawn) - 1) + "\r"


def test_nothing_to_transfer_shows_nothing() -> None:
    for out in (io.StringIO(), Terminal()):
        clock = Clock()
        meter = TransferMeter(out, clock=clock)
        meter(Stats())
        clock.now += 5
        meter(Stats())
        meter.finish()
        assert out.getvalue() == ""
    meter = TransferMeter(io.StringIO())
    meter.finish()  # never called: nothing either
    assert meter.out.getvalue() == ""  # type: ignore[attr-defined]


# -- what dataset clone says ------------------------------------------------------------------------


def test_outcome_lines() -> None:
    head = Head("abc1234def", "main")
    path = Path("/data/ds")
    assert Outcome("ds", path, True, 12, head).line() == "cloned ds into /data/ds (12 commits, HEAD abc1234)"
    assert Outcome("ds", path, True, 1, head).line() == "cloned ds into /data/ds (1 commit, HEAD abc1234)"
    assert Outcome("ds", path, True, 0, Head(None, "main")).line() == "cloned ds into /data/ds (empty repository)"
    assert Outcome("ds", path, False, 0, head).line() == "ds at /data/ds is up to date"
    assert Outcome("ds", path, False, 2, head).line() == "updated ds at /data/ds: 2 new commits (HEAD abc1234)"
    assert Outcome("ds", path, False, 1, head).line() == "updated ds at /data/ds: 1 new commit (HEAD abc1234)"
    assert Outcome("ds", path, False, 0, head, ahead=3).line() == (
        "ds at /data/ds is up to date (3 commits here not on the remote)"
    )


def test_head_descriptions() -> None:
    assert Head("abc1234def", "main").describe() == "abc1234 main"
    assert Head("abc1234def", None).describe() == "abc1234 (detached)"
    assert Head(None, "main").describe() == "empty main"


# -- the record -------------------------------------------------------------------------------


def test_record_round_trip_and_atomic_write(tmp_path: Path) -> None:
    importdir = tmp_path / "import"
    assert load(importdir) == ({}, [])
    first = Clone("ds", tmp_path / "ds", "/srv/ds.git", "2026-11-30T03:00:00Z", "2026-11-30T03:00:00Z")
    _remember(importdir, first, fresh=True)
    assert load(importdir) == ({"ds": first}, [])
    # an update keeps when it was cloned; a fresh clone (or another path) starts again
    later = Clone("ds", first.path, first.url, "2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z")
    _remember(importdir, later, fresh=False)
    assert load(importdir)[0]["ds"].cloned == first.cloned
    assert load(importdir)[0]["ds"].updated == later.updated
    moved = Clone("ds", tmp_path / "elsewhere", first.url, "2026-12-02T00:00:00Z", "2026-12-02T00:00:00Z")
    _remember(importdir, moved, fresh=False)
    assert load(importdir)[0]["ds"] == moved
    other = Clone("b", tmp_path / "b", "/srv/b.git", "2026-12-02T00:00:00Z", "2026-12-02T00:00:00Z")
    _remember(importdir, other, fresh=True)
    assert set(load(importdir)[0]) == {"ds", "b"}
    # no temporary files left beside it; readable JSON with a version
    names = sorted(p.name for p in record_path(importdir).parent.iterdir())
    assert names == ["clones.json", "clones.lock"]
    data = json.loads(record_path(importdir).read_text())
    assert data["v"] == 1 and list(data["clones"]) == ["b", "ds"]


def test_a_damaged_record_is_reported_not_fatal(tmp_path: Path) -> None:
    importdir = tmp_path
    path = record_path(importdir)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    clones, problems = load(importdir)
    assert clones == {} and len(problems) == 1 and str(path) in problems[0]
    path.write_text(json.dumps({"v": 1, "clones": {"ok": {"path": "/a", "url": "/b", "cloned": "t", "updated": "t"},
                                                   "bad": {"path": 3}}}))  # fmt: skip
    clones, problems = load(importdir)
    assert list(clones) == ["ok"] and len(problems) == 1 and "'bad'" in problems[0]
    _save(importdir, clones)
    assert load(importdir) == (clones, [])
