"""What ``tool get``/``tool runs`` show, the registry's two-key operations, and argument binding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maomao.cli import app
from maomao.cli.runs import duration, list_runs, outcome_line
from maomao.cli.tool import Scheduled
from maomao.errors import NotFound
from maomao.model import Claim, Run, Schedule, Tool
from maomao.registry import Registry
from maomao.store.embedded import EmbeddedStore
from maomao.store.keys import Keys

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 11, 30, 3, 0, 0, tzinfo=UTC)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    backend = EmbeddedStore(tmp_path / "registry.db")
    yield Registry(backend, Keys("/r/"))
    await backend.aclose()


def tool(name: str = "crawler") -> Tool:
    return Tool(name, "Ada", "busybox", "/srv/data", "/srv/code", "pages")


def run(run_id: str, state: str = "succeeded", **more: object) -> Run:
    fields: dict[str, object] = {
        "started": "2026-11-30T03:00:00Z", "finished": "2026-11-30T03:01:30Z", "exit_code": 0, **more,
    }  # fmt: skip
    return Run(run_id, "crawler", run_id, "schedule", "lab-1", state, **fields)  # type: ignore[arg-type]


# -- registry -----------------------------------------------------------------------------------


async def test_schedule_needs_the_tool_and_replaces(registry: Registry) -> None:
    daily = Schedule("crawler", "daily", created="2026-11-30T03:00:00Z")
    with pytest.raises(NotFound, match="no tool named 'crawler'"):
        await registry.schedule(daily)
    assert await registry.store.get("/r/schedules/crawler") is None
    await registry.tools.add(tool())
    assert await registry.schedule(daily) is None
    hourly = Schedule("crawler", "hourly", on="lab-1")
    assert await registry.schedule(hourly) == daily
    assert await registry.tool_and_schedule("crawler") == (tool(), hourly)


async def test_unschedule_and_remove(registry: Registry) -> None:
    await registry.tools.add(tool())
    await registry.tools.add(tool("other"))
    with pytest.raises(NotFound, match="tool 'crawler' is not scheduled"):
        await registry.unschedule("crawler")
    with pytest.raises(NotFound, match="no tool named 'nope'"):
        await registry.unschedule("nope")
    await registry.schedule(Schedule("crawler", "daily"))
    await registry.unschedule("crawler")
    assert await registry.tool_and_schedule("crawler") == (tool(), None)
    await registry.schedule(Schedule("crawler", "daily"))
    assert await registry.remove_tool("crawler") is True
    assert (await registry.store.range("/r/schedules/")).kvs == ()
    assert await registry.remove_tool("other") is False
    with pytest.raises(NotFound, match="no tool named 'crawler'"):
        await registry.remove_tool("crawler")
    with pytest.raises(NotFound, match="no tool named 'crawler'"):
        await registry.tool_and_schedule("crawler")


async def test_runs_merge_claims_newest_first(registry: Registry) -> None:
    await registry.tools.add(tool())
    keys = registry.keys
    for run_id in ("20261130T010000Z", "20261130T020000Z", "20261130T020000Z-abcdef"):
        await registry.store.put(keys.run("crawler", run_id), run(run_id).to_value())
    # a claim whose run is recorded too (read between the two): the record wins
    both = Claim("20261130T020000Z", "crawler", "lab-2", "20261130T020000Z", "schedule", "running", "x", "y")
    going = Claim("20261130T030000Z", "crawler", "lab-2", "20261130T030000Z", "schedule", "claimed", "x")
    for claim in (both, going):
        await registry.store.put(keys.claim("crawler", claim.name), claim.to_value())
    listed = await list_runs(registry, "crawler", 0)
    assert [(r.id, r.state) for r in listed] == [
        ("20261130T030000Z", "claimed"),
        ("20261130T020000Z-abcdef", "succeeded"),
        ("20261130T020000Z", "succeeded"),
        ("20261130T010000Z", "succeeded"),
    ]
    assert [r.id for r in await list_runs(registry, "crawler", 2)] == [r.id for r in listed[:2]]
    with pytest.raises(NotFound):
        await list_runs(registry, "nope", 0)


# -- rendering ----------------------------------------------------------------------------------


def test_scheduled_json_and_details() -> None:
    schedule = Schedule("crawler", "*/15 * * * *", "Europe/Berlin", "all", "allow", "site=lab", "2026-11-30T02:00:00Z")
    shown = Scheduled.of(tool(), schedule, NOW)
    assert shown.next_run == "2026-11-30T03:15:00Z"
    as_json = shown.to_dict()
    assert as_json["schedule"] == {
        "expression": "*/15 * * * *",
        "timezone": "Europe/Berlin",
        "catch_up": "all",
        "concurrency": "allow",
        "on": "site=lab",
        "created": "2026-11-30T02:00:00Z",
    }
    assert as_json["next_run"] == "2026-11-30T03:15:00Z" and as_json["name"] == "crawler"
    assert dict(shown.details())["on"] == "site=lab"
    plain = Scheduled.of(tool(), None, NOW)
    assert plain.to_dict()["schedule"] is None and plain.to_dict()["next_run"] is None
    assert dict(plain.details())["schedule"] == "-"
    assert Scheduled.of(tool(), None, NOW, unreadable=True).cell(None) == "?"


def test_duration_and_outcome() -> None:
    assert duration(run("a")) == "1m30s"
    assert duration(run("a", started=None)) == "-"
    assert duration(run("a", finished="garbage")) == "?"
    assert duration(run("a", finished="2026-11-30T02:59:00Z")) == "0s"  # a clock that went back
    assert duration(run("a", "running", finished=None), NOW.replace(second=12)) == "12s+"
    assert outcome_line(run("a")) == "succeeded"
    assert outcome_line(run("a", "failed", exit_code=3)) == "failed (exit 3)"
    assert outcome_line(run("a", "timed_out", exit_code=None)) == "timed_out"


# -- argument binding ---------------------------------------------------------------------------


def test_arguments_bind() -> None:
    _, bound, _ = app.parse_args(["ctl", "tool", "schedule", "crawler", "*/5 * * * *", "--tz", "Europe/Berlin",
                                  "--catch-up", "skip", "--concurrency", "allow", "--on", "site=lab"])  # fmt: skip
    assert bound.arguments == {
        "name": "crawler",
        "expression": "*/5 * * * *",
        "tz": "Europe/Berlin",
        "catch_up": "skip",
        "concurrency": "allow",
        "on": "site=lab",
    }
    _, bound, _ = app.parse_args(["ctl", "tool", "run", "crawler", "--no-wait", "--on", "lab-1",
                                  "--claim-timeout", "2.5"])  # fmt: skip
    assert bound.arguments == {"name": "crawler", "no_wait": True, "on": "lab-1", "claim_timeout": 2.5}
    _, bound, _ = app.parse_args(["ctl", "tool", "runs", "crawler", "--limit", "5", "--json"])
    assert bound.arguments == {"name": "crawler", "limit": 5, "json": True}
    _, bound, _ = app.parse_args(["ctl", "member", "get", "--json"])
    assert bound.arguments == {"json": True}
