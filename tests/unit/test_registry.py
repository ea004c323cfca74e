"""The registry's guarantees, on the embedded backend in-process."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from maomao.cli.output import emit_details, emit_json, emit_table
from maomao.errors import AlreadyExists, NotFound, ValidationError
from maomao.model import Dataset, Tool
from maomao.registry import Registry
from maomao.store.embedded import EmbeddedStore
from maomao.store.keys import Keys

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    backend = EmbeddedStore(tmp_path / "registry.db")
    yield Registry(backend, Keys("/r/"))
    await backend.aclose()


def crawler(author: str = "Ada") -> Tool:
    return Tool("crawler", author, "busybox", "/srv/data", "/srv/code", "pages")


async def test_add_get_list_remove(registry: Registry) -> None:
    first = await registry.tools.add(crawler())
    assert first > 0
    assert await registry.tools.get("crawler") == crawler()
    await registry.datasets.add(Dataset("pages", "/srv/pages"))
    listing = await registry.tools.list()
    assert listing.records == (crawler(),) and listing.unreadable == ()
    assert listing.revision >= first
    kv = await registry.store.get("/r/tools/crawler")
    assert kv is not None and json.loads(kv.value)["v"] == 1
    await registry.tools.remove("crawler")
    assert (await registry.tools.list()).records == ()
    assert (await registry.datasets.list()).records == (Dataset("pages", "/srv/pages"),)


async def test_add_needs_replace_for_an_existing_name(registry: Registry) -> None:
    await registry.tools.add(crawler("Ada"))
    with pytest.raises(AlreadyExists, match="tool 'crawler' exists; use --replace"):
        await registry.tools.add(crawler("Grace"))
    assert (await registry.tools.get("crawler")).author == "Ada"
    await registry.tools.add(crawler("Grace"), replace=True)
    assert (await registry.tools.get("crawler")).author == "Grace"


async def test_concurrent_adds_have_one_winner(registry: Registry) -> None:
    outcomes: list[str] = []

    async def add(author: str) -> None:
        try:
            await registry.tools.add(crawler(author))
            outcomes.append(author)
        except AlreadyExists:
            outcomes.append("lost")

    async with trio.open_nursery() as nursery:
        for author in ("a", "b", "c", "d"):
            nursery.start_soon(add, author)
    winners = [o for o in outcomes if o != "lost"]
    assert len(winners) == 1 and len(outcomes) == 4
    assert (await registry.tools.get("crawler")).author == winners[0]


async def test_missing_names(registry: Registry) -> None:
    with pytest.raises(NotFound, match="no tool named 'x'"):
        await registry.tools.get("x")
    with pytest.raises(NotFound, match="no dataset named 'x'"):
        await registry.datasets.remove("x")


async def test_invalid_names_are_refused_before_any_lookup(registry: Registry) -> None:
    await registry.store.put("/r/tools/", b"not a record")
    await registry.store.put("/r/tools/a/b", b"not a record")
    for name in ("", "a/b", "../x", "-x"):
        with pytest.raises(ValidationError, match="tool name"):
            await registry.tools.get(name)
        with pytest.raises(ValidationError, match="tool name"):
            await registry.tools.remove(name)
    assert await registry.store.get("/r/tools/a/b") is not None


async def test_unreadable_records_are_listed_apart(registry: Registry) -> None:
    await registry.tools.add(crawler())
    await registry.store.put("/r/tools/future", json.dumps({"v": 2, "name": "future"}).encode())
    await registry.store.put("/r/tools/junk", b"\x00\x01")
    listing = await registry.tools.list()
    assert listing.records == (crawler(),)
    assert len(listing.unreadable) == 2
    assert listing.unreadable[0].startswith("/r/tools/future: ") and "upgrade" in listing.unreadable[0]
    assert listing.unreadable[1].startswith("/r/tools/junk: ")


# -- rendering ------------------------------------------------------------------------------


def test_table_is_aligned_and_unpadded_at_the_end() -> None:
    out = io.StringIO()
    emit_table(["NAME", "URL", "DESCRIPTION"], [["a", "/srv/long-url", ""], ["longer-name", "/x", "text"]], out)
    assert out.getvalue() == (
        "NAME         URL            DESCRIPTION\n"
        "a            /srv/long-url\n"
        "longer-name  /x             text\n"
    )


def test_json_and_details() -> None:
    out = io.StringIO()
    emit_json([{"name": "a", "n": 1}], out)
    assert json.loads(out.getvalue()) == [{"name": "a", "n": 1}]
    assert out.getvalue().endswith("]\n")
    out = io.StringIO()
    emit_json([], out)
    assert out.getvalue() == "[]\n"
    out = io.StringIO()
    emit_details([("name", "a"), ("description", "-")], out)
    assert out.getvalue() == "name:        a\ndescription: -\n"
