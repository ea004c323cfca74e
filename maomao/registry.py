"""The registry: tools, datasets, schedules, members and runs as typed records in the store.

One generic :class:`Collection` gives each kind of record the same four
operations with the same guarantees: ``add`` creates only when the name is
free (unless ``replace``), so two concurrent adds of one name have exactly
one winner; ``remove`` of a missing name is an error; ``list`` reports a
record it cannot parse instead of failing on it.

:class:`Registry` adds the operations that span two keys, each one
transaction: a schedule is written only while its tool exists, and removing
a tool removes its schedule with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from maomao.errors import AlreadyExists, ConditionFailed, MaomaoError, NotFound
from maomao.model import Claim, Dataset, Member, Record, Run, Schedule, Tool, UnreadableRecord, check_name
from maomao.store import Compare, Delete, Get, KeyValue, Put, Store
from maomao.store.keys import Keys

R = TypeVar("R", bound=Record)


def parse_at(kv: KeyValue, kind: type[R], root: str) -> R:
    """The record stored at ``kv.key`` (under ``root``, its kind's prefix); MaomaoError naming the key if
    it holds none, or a record whose name is not the key's (``tools/a`` holding tool ``b``)."""
    shown = shown_key(kv.key)
    try:
        record = kind.from_value(kv.value)
    except MaomaoError as exc:
        raise UnreadableRecord(f"{shown}: {exc}") from None
    where = kv.key[len(root) :] if kv.key.startswith(root) else kv.key
    if record.key_name() != where:
        raise UnreadableRecord(
            f"{shown}: stored {kind.kind} is named {record.key_name()!r}, not {where!r} as its key says"
        )
    return record


def shown_key(key: str) -> str:
    """A key as one line can show it: as it is, or escaped (``repr``) when it holds a control character."""
    return key if key.isprintable() else repr(key)


@dataclass(frozen=True, slots=True)
class Listing(Generic[R]):
    """The records under a collection, and those that could not be read."""

    records: tuple[R, ...]
    unreadable: tuple[str, ...]
    revision: int


class Collection(Generic[R]):
    """One kind of named record under one key prefix."""

    def __init__(self, store: Store, prefix: str, record: type[R], root: str | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.record = record
        #: the prefix of every record of this kind (``runs/`` for the runs of one tool under ``runs/<tool>/``)
        self.root = prefix if root is None else root

    async def list(self) -> Listing[R]:
        result = await self.store.range(self.prefix)
        records: list[R] = []
        unreadable: list[str] = []
        for kv in result.kvs:
            try:
                records.append(parse_at(kv, self.record, self.root))
            except MaomaoError as exc:
                unreadable.append(str(exc))
        return Listing(tuple(records), tuple(unreadable), result.revision)

    async def get(self, name: str) -> R:
        check_name(name, f"{self.record.kind} name")
        kv = await self.store.get(self.prefix + name)
        if kv is None:
            raise NotFound(f"no {self.record.kind} named {name!r}")
        return parse_at(kv, self.record, self.root)

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
        self.schedules: Collection[Schedule] = Collection(store, keys.schedules, Schedule)
        self.members: Collection[Member] = Collection(store, keys.members, Member)

    def runs(self, tool: str) -> Collection[Run]:
        """The finished runs of one tool (``runs/<tool>/<run-id>``)."""
        return Collection(self.store, self.keys.runs(check_name(tool, "tool name")), Run, self.keys.all_runs)

    def claims(self, tool: str) -> Collection[Claim]:
        """The runs of one tool in progress (``claims/<tool>/<run-id>``)."""
        return Collection(self.store, self.keys.claims_of(check_name(tool, "tool name")), Claim, self.keys.claims)

    async def tool_and_schedule(self, name: str) -> tuple[Tool, Schedule | None]:
        """One tool and its schedule (None when unscheduled), read at one revision."""
        check_name(name, "tool name")
        result = await self.store.txn([], [Get(self.keys.tool(name)), Get(self.keys.schedule(name))])
        tool_kv, schedule_kv = result.results
        if not isinstance(tool_kv, KeyValue):
            raise NotFound(f"no tool named {name!r}")
        tool = parse_at(tool_kv, Tool, self.keys.tools)
        schedule = parse_at(schedule_kv, Schedule, self.keys.schedules) if isinstance(schedule_kv, KeyValue) else None
        return tool, schedule

    async def schedule(self, schedule: Schedule) -> Schedule | None:
        """Write a tool's schedule while the tool exists; return the one it replaced."""
        key = self.keys.schedule(schedule.name)
        result = await self.store.txn(
            [_exists(self.keys.tool(schedule.name))], [Get(key), Put(key, schedule.to_value())]
        )
        if not result.succeeded:
            raise NotFound(f"no tool named {schedule.name!r}")
        previous = result.results[0]
        if not isinstance(previous, KeyValue):
            return None
        try:
            return Schedule.from_value(previous.value)
        except MaomaoError:
            return None  # an unreadable schedule, now replaced

    async def unschedule(self, tool: str) -> None:
        """Delete a tool's schedule; an unscheduled (or unknown) tool is an error."""
        check_name(tool, "tool name")
        if not await self.store.delete(self.keys.schedule(tool)):
            if await self.store.get(self.keys.tool(tool)) is None:
                raise NotFound(f"no tool named {tool!r}")
            raise NotFound(f"tool {tool!r} is not scheduled")

    async def remove_tool(self, name: str) -> bool:
        """Delete a tool and its schedule in one transaction; return whether it had a schedule."""
        check_name(name, "tool name")
        result = await self.store.txn(
            [_exists(self.keys.tool(name))],
            [Delete(self.keys.tool(name)), Delete(self.keys.schedule(name))],
        )
        if not result.succeeded:
            raise NotFound(f"no tool named {name!r}")
        return bool(result.results[1])


def _exists(key: str) -> Compare:
    """The comparison that holds while ``key`` exists."""
    return Compare(key, "version", ">", 0)
