"""The ``get`` and ``remove`` shape that tools and datasets share."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from maomao.cli.context import Common, with_registry
from maomao.cli.output import emit_details, emit_json, emit_table, warn
from maomao.config import Config
from maomao.model import Record
from maomao.registry import Collection, Registry

R = TypeVar("R", bound=Record)
T = TypeVar("T")


def show(
    common: Common,
    pick: Callable[[Registry], Collection[R]],
    name: str | None,
    as_json: bool,
    columns: Sequence[tuple[str, Callable[[R], str]]],
    details: Callable[[R], Sequence[tuple[str, str]]],
) -> None:
    """``get [NAME] [--json]``: one record or all, as a table or JSON."""

    async def read(registry: Registry, _config: Config) -> list[R]:
        collection = pick(registry)
        if name is not None:
            return [await collection.get(name)]
        listing = await collection.list()
        for problem in listing.unreadable:
            warn(problem)
        return list(listing.records)

    render(with_registry(common, read), name is not None, as_json, columns, details, lambda r: r.to_dict())


def render(
    items: Sequence[T],
    one: bool,
    as_json: bool,
    columns: Sequence[tuple[str, Callable[[T], str]]],
    details: Callable[[T], Sequence[tuple[str, str]]],
    to_json: Callable[[T], Mapping[str, Any]],
) -> None:
    """Show what a ``get`` read: JSON, one item's details, or a table of all."""
    if as_json:
        emit_json(to_json(item) for item in items)
    elif one:
        emit_details(details(items[0]))
    elif not items:
        sys.stderr.write("no records found\n")
    else:
        emit_table([h for h, _ in columns], [[cell(item) for _, cell in columns] for item in items])


def add(common: Common, pick: Callable[[Registry], Collection[R]], record: R, replace: bool) -> None:
    """``add``: create (or with ``replace``, overwrite) one record."""

    async def write(registry: Registry, _config: Config) -> None:
        await pick(registry).add(record, replace=replace)

    with_registry(common, write)
    print(f"{record.kind} {record.name} {'saved' if replace else 'added'}")


def remove(common: Common, pick: Callable[[Registry], Collection[R]], name: str) -> None:
    """``remove NAME``: delete one record; a missing name is an error."""

    async def delete(registry: Registry, _config: Config) -> str:
        collection = pick(registry)
        await collection.remove(name)
        return collection.record.kind

    kind = with_registry(common, delete)
    print(f"{kind} {name} removed")
