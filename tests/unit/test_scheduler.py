"""Scheduler decisions on a real embedded store, with Trio's MockClock driving time.

The store runs inline (no threads), so virtual time moves only when every
task waits: a day of schedules takes milliseconds, deterministically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing

from maomao.config import Config, load_config
from maomao.daemon.cache import StateCache
from maomao.daemon.executor import Executor
from maomao.daemon.membership import Membership
from maomao.daemon.recording import Outbox
from maomao.daemon.scheduler import Scheduler, preferred_member
from maomao.model import Member, Run, Schedule, Tool, utc_iso
from maomao.runner import RunOutcome, RunSpec
from maomao.store import inline
from maomao.store.embedded import EmbeddedStore
from maomao.store.keys import Keys

BASE = datetime(2026, 11, 30, 12, 59, 30, tzinfo=UTC)
KEYS = Keys("/t/")


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class FakeRunner:
    """Records what it was asked to run; each run takes ``seconds`` of virtual time."""

    name = "process"

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self.ran: list[str] = []
        self.started: list[datetime] = []

    async def run(self, spec: RunSpec) -> RunOutcome:
        self.ran.append(f"{spec.tool.name}/{spec.run_id}")
        started = now()
        self.started.append(started)
        await trio.sleep(self.seconds)
        return RunOutcome("succeeded", 0, started, now(), "ok\n")


def now() -> datetime:
    return BASE + timedelta(seconds=trio.current_time())


@dataclass
class Member_:
    scheduler: Scheduler
    runner: FakeRunner
    cache: StateCache
    membership: Membership
    executor: Executor


@dataclass
class Cluster:
    store: EmbeddedStore
    config: Config
    nursery: trio.Nursery
    members: dict[str, Member_] = field(default_factory=dict)

    async def add_member(self, name: str, runner_seconds: float = 1.0, labels: dict[str, str] | None = None) -> Member_:
        cache = StateCache(self.store, KEYS)
        membership = Membership(self.store, KEYS, name, 10, ("process",), labels or {})
        await membership.register()
        await self.nursery.start(membership.keep_alive)
        runner = FakeRunner(runner_seconds)
        outbox = Outbox(self.store, self.config.daemon.state_dir / name / "outbox")
        executor = Executor(self.store, KEYS, self.config, cache, {"process": runner}, outbox, now=now)
        await self.nursery.start(cache.follow)
        await self.nursery.start(executor.serve)
        scheduler = Scheduler(self.store, KEYS, self.config, cache, membership, executor, now=now)
        member = Member_(scheduler, runner, cache, membership, executor)
        self.members[name] = member
        return member

    async def tool(self, name: str, expression: str, **schedule: str) -> None:
        tool = Tool(name, "me", "busybox", "/d", "/c", "web", command="true", runtime="process")
        await self.store.put(KEYS.tool(name), tool.to_value())
        created = schedule.pop("created", utc_iso(now()))
        await self.store.put(
            KEYS.schedule(name), Schedule(name=name, expression=expression, created=created, **schedule).to_value()
        )

    async def settle(self) -> None:
        """Let every cache catch up with the store."""
        await trio.sleep(0.2)

    async def runs(self, tool: str) -> list[Run]:
        return [Run.from_value(kv.value) for kv in (await self.store.range(KEYS.runs(tool))).kvs]


@asynccontextmanager
async def open_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    config_file = tmp_path / "config.ini"
    config_file.write_text(
        f"[maomao]\nimportdir = {tmp_path / 'data'}\n[store]\npath = {tmp_path / 'store.db'}\nprefix = /t/\n"
        f"[daemon]\nstate_dir = {tmp_path / 'state'}\nclaim_grace = 2\nmax_parallel = 4\n"
    )
    config = load_config(config_file, environ={})
    # leases expire on the virtual clock too
    store = EmbeddedStore(tmp_path / "store.db", offload=inline, clock=lambda: now().timestamp())
    async with trio.open_nursery() as nursery:
        yield Cluster(store, config, nursery)
        nursery.cancel_scope.cancel()


async def tick_until(member: Member_, moment: datetime) -> list[str]:
    """Run the member's scheduler passes until virtual ``moment``; what it said."""
    said = []
    while now() < moment:
        sentence, seconds = await member.scheduler.tick()
        said.append(sentence)
        await trio.sleep(max(0.05, min(seconds, 0.5)))
    return said


@pytest.mark.timeout(30)
async def test_every_slot_runs_once_across_two_members(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_cluster(tmp_path) as cluster:
        await _test_every_slot_runs_once_across_two_members(cluster)


async def _test_every_slot_runs_once_across_two_members(cluster: Cluster) -> None:
    await cluster.tool("t", "@every 10s")
    a = await cluster.add_member("a")
    b = await cluster.add_member("b")
    await cluster.settle()
    end = now() + timedelta(seconds=61)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick_until, a, end)
        nursery.start_soon(tick_until, b, end)
    await trio.sleep(5)
    runs = await cluster.runs("t")
    slots = [r.slot for r in runs]
    assert len(slots) == len(set(slots)) >= 6
    assert sorted(a.runner.ran + b.runner.ran) == sorted(f"t/{r.id}" for r in runs)
    # the preferred member (rendezvous) ran each slot: the other waited its grace
    for run in runs:
        assert run.member == preferred_member("t", run.id, ["a", "b"])
    assert {r.member for r in runs} == {"a", "b"}


@pytest.mark.timeout(30)
async def test_non_preferred_member_waits_the_grace(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_cluster(tmp_path) as cluster:
        await _test_non_preferred_member_waits_the_grace(cluster)


async def _test_non_preferred_member_waits_the_grace(cluster: Cluster) -> None:
    await cluster.tool("g", "0 * * * *")
    a = await cluster.add_member("a")
    b = await cluster.add_member("b")
    await cluster.settle()
    next_hour = BASE.replace(minute=0, second=0) + timedelta(hours=1)
    slot = next_hour.strftime("%Y%m%dT%H%M%SZ")
    preferred = preferred_member("g", slot, ["a", "b"])
    other = b if preferred == "a" else a
    # only the other member is ticking: it must not claim before the grace is over
    await tick_until(other, next_hour + timedelta(seconds=1.5))
    assert other.runner.ran == []
    await tick_until(other, next_hour + timedelta(seconds=3))
    assert other.runner.ran == [f"g/{slot}"]


@pytest.mark.timeout(30)
async def test_claim_released_without_a_run_is_taken_over(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_cluster(tmp_path) as cluster:
        await _test_claim_released_without_a_run_is_taken_over(cluster)


async def _test_claim_released_without_a_run_is_taken_over(cluster: Cluster) -> None:
    await cluster.tool("k", "0 * * * *")
    a = await cluster.add_member("a", runner_seconds=1000)
    b = await cluster.add_member("b")
    await cluster.settle()
    next_hour = BASE.replace(minute=0, second=0) + timedelta(hours=1)
    slot = next_hour.strftime("%Y%m%dT%H%M%SZ")
    # make "a" the claimer: only it ticks at first
    await tick_until(a, next_hour + timedelta(seconds=3))
    assert a.runner.ran == [f"k/{slot}"]
    # "a" dies: its lease goes, and with it the claim (a real expiry, by revoking)
    await a.membership.leave()
    await cluster.settle()
    await tick_until(b, next_hour + timedelta(seconds=10))
    assert b.runner.ran == [f"k/{slot}"]
    runs = await cluster.runs("k")
    assert [(r.id, r.member, r.state) for r in runs] == [(slot, "b", "succeeded")]


@pytest.mark.timeout(30)
async def test_catch_up_policies_after_downtime(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_cluster(tmp_path) as cluster:
        await _test_catch_up_policies_after_downtime(cluster)


async def _test_catch_up_policies_after_downtime(cluster: Cluster) -> None:
    created = utc_iso(BASE - timedelta(hours=5))
    await cluster.tool("latest", "0 * * * *", created=created, catch_up="latest")
    await cluster.tool("skip", "0 * * * *", created=created, catch_up="skip")
    await cluster.tool("all", "0 * * * *", created=created, catch_up="all")
    await cluster.tool("new", "0 * * * *", catch_up="latest")  # created now: nothing missed
    a = await cluster.add_member("a", runner_seconds=0.1)
    await cluster.settle()
    await tick_until(a, now() + timedelta(seconds=20))
    ran = sorted(a.runner.ran)
    assert [r for r in ran if r.startswith("latest/")] == ["latest/20261130T120000Z"]  # the newest missed
    assert [r for r in ran if r.startswith("skip/")] == []
    assert [r for r in ran if r.startswith("all/")] == [
        f"all/20261130T{h:02d}0000Z" for h in range(8, 13)
    ]
    assert [r for r in ran if r.startswith("new/")] == []


@pytest.mark.timeout(30)
async def test_overlapping_slot_is_recorded_skipped(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_cluster(tmp_path) as cluster:
        await _test_overlapping_slot_is_recorded_skipped(cluster)


async def _test_overlapping_slot_is_recorded_skipped(cluster: Cluster) -> None:
    await cluster.tool("slow", "@every 10s", concurrency="forbid")
    a = await cluster.add_member("a", runner_seconds=25)
    await cluster.settle()
    await tick_until(a, now() + timedelta(seconds=35))
    await trio.sleep(30)
    runs = {r.id: r.state for r in await cluster.runs("slow")}
    assert "succeeded" in runs.values() and "skipped" in runs.values()
    assert len(a.runner.ran) == list(runs.values()).count("succeeded")


@pytest.mark.timeout(30)
async def test_on_all_runs_once_per_member_and_labels_place(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_cluster(tmp_path) as cluster:
        await _test_on_all_runs_once_per_member_and_labels_place(cluster)


async def _test_on_all_runs_once_per_member_and_labels_place(cluster: Cluster) -> None:
    await cluster.tool("everywhere", "0 * * * *", on="all")
    await cluster.tool("gpu-only", "0 * * * *", on="gpu=yes")
    a = await cluster.add_member("a", runner_seconds=0.1, labels={"gpu": "yes"})
    b = await cluster.add_member("b", runner_seconds=0.1)
    await cluster.settle()
    next_hour = BASE.replace(minute=0, second=0) + timedelta(hours=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick_until, a, next_hour + timedelta(seconds=5))
        nursery.start_soon(tick_until, b, next_hour + timedelta(seconds=5))
    slot = next_hour.strftime("%Y%m%dT%H%M%SZ")
    assert sorted(a.runner.ran) == sorted([f"everywhere/{slot}.a", f"gpu-only/{slot}"])
    assert b.runner.ran == [f"everywhere/{slot}.b"]


@pytest.mark.timeout(30)
async def test_run_request_is_claimed_and_recorded(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_cluster(tmp_path) as cluster:
        await _test_run_request_is_claimed_and_recorded(cluster)


async def _test_run_request_is_claimed_and_recorded(cluster: Cluster) -> None:
    from maomao.model import RunRequest

    await cluster.tool("req", "0 * * * *")
    a = await cluster.add_member("a", runner_seconds=0.1)
    await cluster.settle()
    run_id = "20261130T120001Z-abcdef"
    await cluster.store.put(
        KEYS.request(run_id), RunRequest(name=run_id, tool="req", on="a", created=utc_iso(now())).to_value()
    )
    await cluster.settle()
    await tick_until(a, now() + timedelta(seconds=3))
    await trio.sleep(1)
    runs = await cluster.runs("req")
    assert [(r.id, r.trigger, r.state) for r in runs] == [(run_id, "request", "succeeded")]
    assert await cluster.store.get(KEYS.request(run_id)) is None
    assert await cluster.store.get(KEYS.claim("req", run_id)) is None


@pytest.mark.timeout(30)
async def test_member_record_eligibility() -> None:
    member = Member("m", "h", "1", ("process",), {"site": "lab"}, "2026-11-30T00:00:00Z")
    assert member.eligible("any", "process")
    assert member.eligible("site=lab", "process")
    assert not member.eligible("site=home", "process")
    assert member.eligible("m", "process") and not member.eligible("n", "process")
    assert not member.eligible("any", "container")


@pytest.mark.timeout(30)
async def test_retention_keeps_the_newest_and_drops_the_old(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    from maomao.daemon.retention import RetentionSweeper

    async with open_cluster(tmp_path) as cluster:
        await cluster.tool("r", "0 * * * *")
        a = await cluster.add_member("a")
        await cluster.settle()
        for day in range(40):  # one run a day, the newest today
            finished = now() - timedelta(days=39 - day) + timedelta(hours=1)
            run = Run(
                id=finished.strftime("%Y%m%dT%H%M%SZ"), tool="r", slot=utc_iso(finished), trigger="schedule",
                member="a", state="succeeded", started=utc_iso(finished), finished=utc_iso(finished),
            )
            await cluster.store.put(KEYS.run("r", run.id), run.to_value())
        config = cluster.config
        sweeper = RetentionSweeper(cluster.store, KEYS, config, a.cache, a.membership, now=now)
        # default: keep 100, none older than 30 days: the runs of days 31-39 back go
        assert await sweeper.sweep() == 9
        left = await cluster.runs("r")
        assert len(left) == 31 and left[-1].finished == utc_iso(now() + timedelta(hours=1))
        object.__setattr__(config.daemon, "keep_runs", 5)
        assert await sweeper.sweep() == 26
        assert [r.id for r in await cluster.runs("r")] == [r.id for r in left[-5:]]



@pytest.mark.timeout(30)
async def test_retention_sweeps_spike_records_too(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    from maomao.daemon.retention import RetentionSweeper
    from maomao.model import Spike

    async with open_cluster(tmp_path) as cluster:
        await cluster.tool("s", "0 * * * *")
        a = await cluster.add_member("a")
        await cluster.settle()
        for day in range(100):  # a spike a day for 100 days, the newest today
            detected = now() - timedelta(days=99 - day) + timedelta(hours=1)
            run_id = detected.strftime("%Y%m%dT%H%M%SZ")
            spike = Spike(
                name=f"{run_id}.control", tool="s", metric="control", run_id=run_id, member="a", point="p",
                value=9.0, baseline=1.0, deviation=8.0, score=0.99, detected=utc_iso(detected),
            )  # fmt: skip
            await cluster.store.put(KEYS.spike("s", spike.name), spike.to_value())
        await cluster.store.put(KEYS.spike("s", "00000000T000000Z.broken"), b"not json")
        sweeper = RetentionSweeper(cluster.store, KEYS, cluster.config, a.cache, a.membership, now=now)
        # default: keep 1000, none older than 90 days: days 91-99 back go; an unreadable record (it sorts
        # first, the oldest) stays while within keep
        assert await sweeper.sweep() == 9
        left = (await cluster.store.range(KEYS.spikes("s"))).kvs
        assert len(left) == 92
        object.__setattr__(cluster.config.spikes, "keep", 10)
        assert await sweeper.sweep() == 82
        kept = [Spike.from_value(kv.value) for kv in (await cluster.store.range(KEYS.spikes("s"))).kvs]
        assert len(kept) == 10 and kept[-1].detected == utc_iso(now() + timedelta(hours=1))


@pytest.mark.timeout(30)
async def test_preferred_member_claims_ahead_and_starts_on_time(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with open_cluster(tmp_path) as cluster:
        await cluster.tool("punctual", "0 * * * *")
        a = await cluster.add_member("a", runner_seconds=0.1)
        await cluster.settle()
        next_hour = BASE.replace(minute=0, second=0) + timedelta(hours=1)
        claimed_at: list[datetime] = []

        async def watch_claim() -> None:
            while not a.cache.claims:  # noqa: ASYNC110 - polls the cache
                await trio.sleep(0.01)
            claimed_at.append(now())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_claim)
            nursery.start_soon(tick_until, a, next_hour + timedelta(seconds=2))
        assert claimed_at and claimed_at[0] < next_hour  # the claim is in before the slot
        assert len(a.runner.started) == 1
        assert timedelta(0) <= a.runner.started[0] - next_hour < timedelta(seconds=0.05)  # and the run starts on time


@pytest.mark.timeout(30)
async def test_claim_whose_answer_was_lost_is_released_and_run(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    from maomao.model import Claim

    async with open_cluster(tmp_path) as cluster:
        await cluster.tool("lost", "0 * * * *")
        a = await cluster.add_member("a", runner_seconds=0.1)
        await cluster.settle()
        next_hour = BASE.replace(minute=0, second=0) + timedelta(hours=1)
        slot = next_hour.strftime("%Y%m%dT%H%M%SZ")
        # the claim transaction committed, but its answer never reached the member
        claim = Claim(
            name=slot, tool="lost", member="a", slot=utc_iso(next_hour), trigger="schedule",
            state="claimed", claimed=utc_iso(now()),
        )
        await cluster.store.put(KEYS.claim("lost", slot), claim.to_value(), lease=a.membership.lease)
        await cluster.settle()
        await tick_until(a, next_hour + timedelta(seconds=3))
        await trio.sleep(1)
        assert a.runner.ran == [f"lost/{slot}"]
        assert [(r.id, r.state) for r in await cluster.runs("lost")] == [(slot, "succeeded")]
