"""Unit tests of the store's pure parts: comparisons, range ends, the inline driver, lease clocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.store import Compare, KeyValue, compare_holds, inline, run_inline
from maomao.store.embedded import EmbeddedStore, prefix_end
from maomao.store.etcd import range_end

KV = KeyValue("k", b"v", create_revision=3, mod_revision=7, version=2)


@pytest.mark.parametrize(
    ("compare", "kv", "holds"),
    [
        (Compare("k", "mod", "=", 7), KV, True),
        (Compare("k", "mod", "=", 0), None, True),
        (Compare("k", "mod", "=", 0), KV, False),
        (Compare("k", "create", "<", 4), KV, True),
        (Compare("k", "version", ">", 2), KV, False),
        (Compare("k", "version", "!=", 2), KV, False),
        (Compare("k", "value", "=", b"v"), KV, True),
        (Compare("k", "value", "!=", b"w"), KV, True),
        (Compare("k", "value", "=", b""), None, False),
        (Compare("k", "value", "!=", b"x"), None, False),
    ],
)
def test_compare_holds(compare: Compare, kv: KeyValue | None, holds: bool) -> None:
    assert compare_holds(compare, kv) is holds


def test_range_ends() -> None:
    assert range_end("/maomao/tools/") == b"/maomao/tools0"
    assert range_end("a\xff") == "a\xff".encode()[:-1] + bytes([0xC0])
    assert range_end("") == b"\0"
    assert prefix_end("/maomao/tools/") == "/maomao/tools0"
    assert prefix_end("") is None


def test_run_inline_refuses_a_coroutine_that_suspends() -> None:
    import trio.lowlevel

    async def sleeps() -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(RuntimeError, match="event loop"):
        run_inline(sleeps())
    assert run_inline(inline(lambda: 42)) == 42


def test_embedded_lease_expiry_follows_its_clock(tmp_path: Path) -> None:
    now = [1000.0]
    store = EmbeddedStore(tmp_path / "s.db", offload=inline, clock=lambda: now[0])
    lease = run_inline(store.grant(10))
    run_inline(store.put("/a", b"1", lease=lease))
    now[0] += 9.9
    assert run_inline(store.keepalive(lease)) == 10
    now[0] += 9.9
    assert run_inline(store.get("/a")) is not None
    now[0] += 10.2
    assert run_inline(store.get("/a")) is None
    # the expiry is a change of its own, visible in the history
    result = run_inline(store.range("/"))
    assert result.revision == 3


def test_embedded_store_files_are_private(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "state" / "store.db", offload=inline)
    run_inline(store.put("/a", b"1"))
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    for name in ("store.db", "store.db-wal", "store.db-shm"):
        assert (tmp_path / "state" / name).stat().st_mode & 0o777 == 0o600, name
