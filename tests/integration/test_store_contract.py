"""The store contract: one suite, both backends (SQLite and a real etcd server)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from maomao.errors import Compacted, ConditionFailed, LeaseExpired
from maomao.store import Compare, Delete, Event, Get, Put, Store
from maomao.store.embedded import EmbeddedStore
from maomao.store.etcd import EtcdStore
from tests.support.etcd import EtcdCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(params=["embedded", "etcd"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    if request.param == "embedded":
        backend: Store = EmbeddedStore(tmp_path / "store.db")
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd")
        backend = EtcdStore(cluster.endpoints)
    yield backend
    await backend.aclose()


async def collect(store: Store, prefix: str, start: int, count: int) -> list[Event]:
    """The first ``count`` events of a watch, or fail after 10 s."""
    events: list[Event] = []
    with trio.fail_after(10):
        async with contextlib.aclosing(store.watch(prefix, start)) as stream:  # type: ignore[type-var]
            async for event in stream:
                events.append(event)
                if len(events) == count:
                    break
    return events


def shape(events: list[Event]) -> list[tuple[str, str, bytes]]:
    return [(e.type, e.kv.key, e.kv.value) for e in events]


async def test_put_get_revisions(store: Store, prefix: str) -> None:
    key = prefix + "a"
    assert await store.get(key) is None
    first = await store.put(key, b"1")
    kv = await store.get(key)
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"1", first, first, 1)
    second = await store.put(key, b"2")
    assert second > first
    kv = await store.get(key)
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", first, second, 2)


async def test_range_is_ordered_and_bounded_by_prefix(store: Store, prefix: str) -> None:
    for name in ["b", "a", "c/d", "ab"]:
        await store.put(prefix + "x/" + name, name.encode())
    await store.put(prefix + "y", b"outside")
    last = await store.put(prefix + "x", b"not under x/")
    result = await store.range(prefix + "x/")
    assert [kv.key for kv in result.kvs] == [prefix + "x/" + n for n in ["a", "ab", "b", "c/d"]]
    assert [kv.value for kv in result.kvs] == [b"a", b"ab", b"b", b"c/d"]
    assert result.revision >= last
    assert (await store.range(prefix + "nothing/")).kvs == ()


async def test_put_if_revision(store: Store, prefix: str) -> None:
    key = prefix + "k"
    created = await store.put(key, b"v1", if_revision=0)
    with pytest.raises(ConditionFailed):
        await store.put(key, b"again", if_revision=0)
    with pytest.raises(ConditionFailed):
        await store.put(key, b"stale", if_revision=created - 1)
    kv = await store.get(key)
    assert kv is not None and kv.value == b"v1" and kv.mod_revision == created
    updated = await store.put(key, b"v2", if_revision=created)
    assert updated > created
    with pytest.raises(ConditionFailed):
        await store.put(key, b"v3", if_revision=created)
    kv = await store.get(key)
    assert kv is not None and kv.value == b"v2"


async def test_delete_if_revision(store: Store, prefix: str) -> None:
    key = prefix + "k"
    assert await store.delete(key) is False
    rev = await store.put(key, b"v")
    with pytest.raises(ConditionFailed):
        await store.delete(key, if_revision=rev + 100)
    assert await store.get(key) is not None
    assert await store.delete(key, if_revision=rev) is True
    assert await store.get(key) is None
    # recreated: a new create_revision, version back to 1
    again = await store.put(key, b"w")
    kv = await store.get(key)
    assert kv is not None and kv.create_revision == again and kv.version == 1


async def test_txn_branches_and_one_revision(store: Store, prefix: str) -> None:
    a, b, c = prefix + "a", prefix + "b", prefix + "c"
    base = await store.put(a, b"1")
    result = await store.txn(
        [Compare(a, "value", "=", b"1"), Compare(b, "create", "=", 0)],
        [Put(b, b"2"), Put(c, b"3"), Get(a)],
        [Put(a, b"failed")],
    )
    assert result.succeeded
    assert result.revision == base + 1
    got = result.results[2]
    assert got is not None and not isinstance(got, int) and got.value == b"1"
    kv_b, kv_c = await store.get(b), await store.get(c)
    assert kv_b is not None and kv_c is not None
    assert kv_b.mod_revision == kv_c.mod_revision == result.revision

    failed = await store.txn(
        [Compare(b, "version", ">", 5)],
        [Delete(a)],
        [Get(b), Delete(prefix, prefix=True)],
    )
    assert not failed.succeeded
    assert failed.results[1] == 3
    assert (await store.range(prefix)).kvs == ()


async def test_txn_with_only_reads_keeps_the_revision(store: Store, prefix: str) -> None:
    rev = await store.put(prefix + "a", b"1")
    result = await store.txn([Compare(prefix + "a", "mod", "=", rev)], [Get(prefix + "a")])
    assert result.succeeded and result.revision == rev


async def test_concurrent_creates_have_one_winner(store: Store, prefix: str) -> None:
    key = prefix + "contended"
    winners: list[int] = []
    losers: list[int] = []

    async def create(i: int) -> None:
        try:
            await store.put(key, str(i).encode(), if_revision=0)
            winners.append(i)
        except ConditionFailed:
            losers.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(create, i)
    assert len(winners) == 1 and len(losers) == 11
    kv = await store.get(key)
    assert kv is not None and kv.value == str(winners[0]).encode()


async def test_lease_keepalive_and_revoke(store: Store, prefix: str) -> None:
    lease = await store.grant(2)
    await store.put(prefix + "mine", b"x", lease=lease)
    kv = await store.get(prefix + "mine")
    assert kv is not None and kv.lease == lease
    for _ in range(6):  # 3 s, beyond the ttl, kept alive
        await trio.sleep(0.5)
        assert await store.keepalive(lease) == 2
    assert await store.get(prefix + "mine") is not None
    await store.revoke(lease)
    assert await store.get(prefix + "mine") is None
    with pytest.raises(LeaseExpired):
        await store.keepalive(lease)
    with pytest.raises(LeaseExpired):
        await store.put(prefix + "late", b"x", lease=lease)
    assert await store.get(prefix + "late") is None
    await store.revoke(lease)  # revoking twice is fine


async def test_lease_expiry_deletes_keys_with_events(store: Store, prefix: str) -> None:
    lease = await store.grant(2)
    start = await store.put(prefix + "e/1", b"a", lease=lease)
    await store.put(prefix + "e/2", b"b", lease=lease)
    await store.put(prefix + "e/kept", b"c")
    with trio.fail_after(10):
        while (await store.range(prefix + "e/")).kvs[0].key != prefix + "e/kept":  # noqa: ASYNC110 - polls the store
            await trio.sleep(0.2)
    assert [kv.key for kv in (await store.range(prefix + "e/")).kvs] == [prefix + "e/kept"]
    with pytest.raises(LeaseExpired):
        await store.keepalive(lease)
    events = await collect(store, prefix + "e/", start, 5)
    assert shape(events)[3:] == [("delete", prefix + "e/1", b""), ("delete", prefix + "e/2", b"")]


async def test_watch_sees_every_change_in_order(store: Store, prefix: str) -> None:
    start = await store.put(prefix + "w/a", b"1")
    await store.put(prefix + "other", b"not watched")
    await store.put(prefix + "w/b", b"2")
    await store.delete(prefix + "w/a")
    await store.txn([], [Put(prefix + "w/c", b"3"), Put(prefix + "w/d", b"4")])
    seen_history = await collect(store, prefix + "w/", start, 5)
    assert shape(seen_history) == [
        ("put", prefix + "w/a", b"1"),
        ("put", prefix + "w/b", b"2"),
        ("delete", prefix + "w/a", b""),
        ("put", prefix + "w/c", b"3"),
        ("put", prefix + "w/d", b"4"),
    ]
    revisions = [e.revision for e in seen_history]
    assert revisions == sorted(revisions) and revisions[-1] == revisions[-2]

    # live: a watch started at "now" sees later writes as they happen
    now = (await store.range(prefix)).revision + 1
    live: list[Event] = []

    async def watcher(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        live.extend(await collect(store, prefix + "w/", now, 20))

    async with trio.open_nursery() as nursery:
        await nursery.start(watcher)
        for i in range(20):
            await store.put(prefix + f"w/live{i:02d}", str(i).encode())
            if i % 5 == 0:
                await trio.sleep(0.05)
    assert [e.kv.key for e in live] == [prefix + f"w/live{i:02d}" for i in range(20)]


async def test_compacted_revision_is_reported(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> None:
    for backend in ("embedded", "etcd"):
        if backend == "embedded":
            store: Store = EmbeddedStore(tmp_path / "compact.db")
        else:
            store = EtcdStore(request.getfixturevalue("own_etcd").endpoints)
        first = await store.put(prefix + "c", b"1")
        await store.put(prefix + "c", b"2")
        last = await store.put(prefix + "c", b"3")
        await store.compact(last)
        with pytest.raises(Compacted) as caught:
            await collect(store, prefix, first, 1)
        assert caught.value.compact_revision == last, backend
        assert shape(await collect(store, prefix, last, 1)) == [("put", prefix + "c", b"3")]
        await store.aclose()


async def test_a_refused_request_is_a_store_error(store: Store, prefix: str) -> None:
    from maomao.errors import StoreError

    rev = await store.put(prefix + "a", b"1")
    with pytest.raises(StoreError, match="future revision"):
        await store.compact(rev + 1_000_000)


async def test_etcd_watch_resumes_after_restart(own_etcd: EtcdCluster, prefix: str) -> None:
    store = EtcdStore(own_etcd.endpoints, timeout=2)
    start = await store.put(prefix + "r/0", b"before")
    seen: list[Event] = []
    got_first = trio.Event()

    async def watcher() -> None:
        async with contextlib.aclosing(store.watch(prefix + "r/", start)) as stream:  # type: ignore[type-var]
            async for event in stream:
                seen.append(event)
                got_first.set()
                if len(seen) == 3:
                    return

    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            await got_first.wait()
            await trio.to_thread.run_sync(own_etcd.stop)
            await trio.sleep(1)
            await trio.to_thread.run_sync(own_etcd.start)
            await store.put(prefix + "r/1", b"after")
            await store.put(prefix + "r/2", b"after too")
    assert shape(seen) == [
        ("put", prefix + "r/0", b"before"),
        ("put", prefix + "r/1", b"after"),
        ("put", prefix + "r/2", b"after too"),
    ]
    await store.aclose()


CHILD = """
import sys, trio
from maomao.store.embedded import EmbeddedStore
from maomao.store import inline, run_inline
store = EmbeddedStore(sys.argv[1], offload=inline)
kind, prefix = sys.argv[2], sys.argv[3]
if kind == "write":
    for i in range(5):
        run_inline(store.put(prefix + f"child/{i}", b"from child"))
elif kind == "lease":
    lease = run_inline(store.grant(2))
    run_inline(store.put(prefix + "child/leased", b"x", lease=lease))
else:
    kv = run_inline(store.get(prefix + "parent"))
    print(kv.value.decode() if kv else "missing")
"""


def run_child(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


async def test_two_processes_share_an_embedded_store(tmp_path: Path, prefix: str) -> None:
    path = str(tmp_path / "shared.db")
    store = EmbeddedStore(path)
    start = await store.put(prefix + "parent", b"from parent")
    assert await trio.to_thread.run_sync(run_child, path, "read", prefix) == "from parent"

    seen: list[Event] = []

    async def watcher(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        seen.extend(await collect(store, prefix + "child/", start, 7))

    async with trio.open_nursery() as nursery:
        await nursery.start(watcher)
        await trio.to_thread.run_sync(run_child, path, "write", prefix)
        await trio.to_thread.run_sync(run_child, path, "lease", prefix)
    # 5 writes and the leased key from the children, then the lease's expiry
    # carried out by this process's watch
    assert [e.kv.key.rsplit("/", 1)[1] for e in seen] == ["0", "1", "2", "3", "4", "leased", "leased"]
    assert [e.type for e in seen][-1] == "delete"
    await store.aclose()


async def test_unreachable_etcd_names_every_endpoint(etcd: EtcdCluster) -> None:
    from maomao.errors import StoreUnavailable
    from tests.support.etcd import free_port

    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    store = EtcdStore(dead, timeout=1)
    with pytest.raises(StoreUnavailable) as caught:
        await store.get("/x")
    assert all(url in str(caught.value) for url in dead)
    await store.aclose()

    # failover: a dead endpoint first, a live one second
    mixed = EtcdStore([dead[0], *etcd.endpoints], timeout=2)
    await mixed.put("/failover-test", b"ok")
    kv = await mixed.get("/failover-test")
    assert kv is not None and kv.value == b"ok"
    await mixed.aclose()


async def test_unopenable_embedded_store_is_unavailable(tmp_path: Path) -> None:
    from maomao.errors import StoreUnavailable

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = EmbeddedStore(blocker / "store.db")
    with pytest.raises(StoreUnavailable) as caught:
        await store.get("/x")
    assert str(blocker / "store.db") in str(caught.value)
