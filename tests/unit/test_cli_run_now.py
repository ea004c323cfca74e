"""``tool run``'s side of the run-request protocol, in-process on the embedded store.

A Trio task plays the member; :class:`~maomao.cli.follow.Follower` is
driven directly, so the races (a claim that lands as the claim timeout
fires, a watch that fell behind a compaction) can be staged exactly.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from maomao.cli.follow import Follower
from maomao.cli.run_now import new_run_id, no_member
from maomao.errors import MaomaoError
from maomao.model import Claim, Member, Run, RunRequest, Tool
from maomao.store import Delete, Put, Store
from maomao.store.embedded import EmbeddedStore
from maomao.store.keys import Keys

pytestmark = pytest.mark.timeout(30)

KEYS = Keys("/u/")
TOOL = "echo"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    backend = EmbeddedStore(tmp_path / "store.db")
    yield backend
    await backend.aclose()


async def request(store: Store, run_id: str = "20261130T030512Z-a1b2c3") -> tuple[Follower, int]:
    record = RunRequest(run_id, TOOL, "any", "2026-11-30T03:05:12Z", "ada@pc")
    revision = await store.put(KEYS.request(run_id), record.to_value(), if_revision=0)
    return Follower(store, KEYS, TOOL, run_id, claim_timeout=0.5), revision


def claim(run_id: str, state: str = "claimed") -> bytes:
    return Claim(run_id, TOOL, "lab-1", run_id, "request", state, "2026-11-30T03:05:13Z").to_value()


def run(run_id: str, state: str = "succeeded") -> Run:
    return Run(run_id, TOOL, run_id, "request", "lab-1", state, "2026-11-30T03:05:13Z", "2026-11-30T03:05:15Z", 0)


async def record(store: Store, follower: Follower, state: str = "succeeded") -> Run:
    """What a member does at the end: one transaction."""
    done = run(follower.run_id, state)
    await store.txn(
        [],
        [Put(follower.run_key, done.to_value()), Delete(follower.claim_key), Delete(follower.request_key)],
    )
    return done


def test_run_ids_sort_by_time_and_differ() -> None:
    early = new_run_id(datetime(2026, 11, 30, 3, 5, 12, tzinfo=UTC))
    late = new_run_id(datetime(2026, 11, 30, 3, 5, 13, tzinfo=UTC))
    assert re.fullmatch(r"20261130T030512Z-[0-9a-f]{6}", early)
    assert early < late
    assert len({new_run_id(datetime(2026, 11, 30, tzinfo=UTC)) for _ in range(50)}) > 45
    # a scheduled run's id (its slot) of the same second sorts before a requested one
    assert early > "20261130T030512Z"


def test_no_member_messages() -> None:
    tool = Tool("echo", "Ada", "busybox", "/a", "/b", "c", command="true", runtime="process")
    assert str(no_member(tool, "any", [])) == "no members are running: no one can run tool echo"
    members = [Member(n, "h", "1", ("container",), {}, "2026-11-30T03:00:00Z") for n in ("a", "b")]
    assert str(no_member(tool, "any", members)) == "no live member can run tool echo (runtime process); members: a, b"
    assert "(runtime process, on x=y)" in str(no_member(tool, "x=y", members))


async def test_follow_prints_each_state_once_and_returns_the_run(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    follower, revision = await request(store)

    async def member() -> None:
        await trio.sleep(0.1)
        await store.put(follower.claim_key, claim(follower.run_id))
        await store.put(follower.claim_key, claim(follower.run_id))  # a renewal: nothing new to say
        await store.put(follower.claim_key, claim(follower.run_id, "running"))
        await record(store, follower)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(member)
        with trio.fail_after(10):
            done = await follower.follow(revision + 1)
    assert done == run(follower.run_id)
    assert capsys.readouterr().out == "claimed by lab-1\nrunning on lab-1\n"


async def test_claim_timeout_withdraws_the_request(store: Store) -> None:
    follower, revision = await request(store)
    with trio.fail_after(10), pytest.raises(MaomaoError, match=r"no member took run .* within 0.5s; request withdrawn"):
        await follower.follow(revision + 1)
    assert await store.get(follower.request_key) is None


async def test_a_claim_that_lands_as_the_timeout_fires_is_followed(store: Store) -> None:
    follower, _ = await request(store)
    # the claim is there, but before the revision the follower watches from: it learns of it only
    # when its withdrawal finds the claim, and then keeps waiting for the run
    after_claim = await store.put(follower.claim_key, claim(follower.run_id, "running")) + 1

    async def member() -> None:
        await trio.sleep(0.8)
        await record(store, follower, "failed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(member)
        with trio.fail_after(10):
            done = await follower.follow(after_claim)
    assert done.state == "failed"


async def test_a_request_deleted_by_someone_else_ends_the_wait(store: Store) -> None:
    follower, revision = await request(store)
    await store.delete(follower.request_key)
    with trio.fail_after(10), pytest.raises(MaomaoError, match="was deleted before it ran"):
        await follower.follow(revision + 1)


async def test_a_claim_that_dies_sends_the_request_back_to_waiting(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    follower, revision = await request(store)

    async def members() -> None:
        lease = await store.grant(30)
        await store.put(follower.claim_key, claim(follower.run_id), lease=lease)
        await trio.sleep(0.1)
        await store.revoke(lease)  # lab-1 died
        await trio.sleep(0.1)
        await store.put(follower.claim_key, claim(follower.run_id, "running"))
        await record(store, follower)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(members)
        with trio.fail_after(10):
            await follower.follow(revision + 1)
    assert capsys.readouterr().out.splitlines() == [
        "claimed by lab-1",
        "lab-1 gave the run up (its lease ended); waiting for another member",
        "running on lab-1",
    ]


async def test_a_watch_behind_a_compaction_catches_up_from_the_keys(store: Store) -> None:
    follower, revision = await request(store)
    await store.put(follower.claim_key, claim(follower.run_id))
    done = await record(store, follower)
    latest = await store.put(KEYS.prefix + "other", b"x")
    await store.compact(latest)
    with trio.fail_after(10):
        assert await follower.follow(revision + 1) == done


async def test_withdraw_holds_only_while_unclaimed(store: Store) -> None:
    follower, _ = await request(store)
    await store.put(follower.claim_key, claim(follower.run_id))
    assert not await follower.withdraw()
    assert await store.get(follower.request_key) is not None
    await store.delete(follower.claim_key)
    await store.put(follower.run_key, run(follower.run_id).to_value())
    assert not await follower.withdraw()
    await store.delete(follower.run_key)
    assert await follower.withdraw()
    assert await store.get(follower.request_key) is None
