"""The registry: tools and datasets as typed records in the store.

One generic :class:`Collection` gives each kind of record the same four
operations with the same guarantees: ``add`` creates only when the name is
free (unless ``replace``), so two concurrent adds of one name have exactly
one winner; ``remove`` of a missing name is an error; ``list`` reports a
record it cannot parse instead of failing on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from maomao.errors import AlreadyExists, ConditionFailed, MaomaoError, NotFound
from maomao.model import Dataset, Record, Tool, check_name
from maomao.store import Store
from maomao.store.keys import Keys

R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class Listing(Generic[R]):
    """The records under a collection, and those that could not be read."""

    records: tuple[R, ...]
    unreadable: tuple[str, ...]
    revision: int


class Collection(Generic[R]):
    """One kind of named record under one key prefix."""

    def __init__(self, store: Store, prefix: str, record: type[R]) -> None:
        self.store = store
        self.prefix = prefix
        self.record = record

    async def list(self) -> Listing[R]:
        result = await self.store.range(self.prefix)
        records: list[R] = []
        unreadable: list[str] = []
        for kv in result.kvs:
            try:
                records.append(self.record.from_value(kv.value))
            except MaomaoError as exc:
                unreadable.append(f"{kv.key}: {exc}")
        return Listing(tuple(records), tuple(unreadable), result.revision)

    async def get(self, name: str) -> R:
        check_name(name, f"{self.record.kind} name")
        kv = await self.store.get(self.prefix + name)
        if kv is None:
            raise NotFound(f"no {self.record.kind} named {name!r}")
        return self.record.from_value(kv.value)

    async def add(self, record: R, *, replace: bool = False) -> int:
        """Store ``record`` under its name; return the store revision."""
        name = record.name
        try:
            return await self.store.put(
                self.prefix + name, record.to_value(), if_revision=None if replace else 0
            )
        except ConditionFailed:
            raise AlreadyExists(
                f"{self.record.kind} {name!r} exists; use --replace to overwrite it"
            ) from None

    async def remove(self, name: str) -> None:
        check_name(name, f"{self.record.kind} name")
        if not await self.store.delete(self.prefix + name):
            raise NotFound(f"no {self.record.kind} named {name!r}")


class Registry:
    """Every collection of the store, under one key prefix."""

    def __init__(self, store: Store, keys: Keys) -> None:
        self.store = store
        self.keys = keys
        self.tools: Collection[Tool] = Collection(store, keys.tools, Tool)
        self.datasets: Collection[Dataset] = Collection(store, keys.datasets, Dataset)
