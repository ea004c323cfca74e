"""The state cache: what the daemon decides on, read once and kept current by a watch.

It holds the parsed tools, schedules, members, claims and run requests
(everything under the prefix but runs and spikes, which grow without
bound), and remembers the runs recorded recently so the scheduler does not
try to claim a slot that is done.  Loading ranges each collection, then one
watch of the whole prefix follows from the oldest revision read; an event
older than what a key already holds is ignored, so the overlap is harmless.
A compacted revision reloads everything.  A record that does not parse is
logged once and left out.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from typing import TypeVar

import trio

from maomao.errors import Compacted, MaomaoError, StoreUnavailable
from maomao.model import Claim, Member, Record, RunRequest, Schedule, Tool
from maomao.registry import parse_at, shown_key
from maomao.store import Event, KeyValue, Store
from maomao.store.keys import Keys

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)

#: how many recorded run keys the cache remembers
RECORDED_MEMORY = 200_000


class StateCache:
    """Parsed records by name, current to ``revision``."""

    def __init__(self, store: Store, keys: Keys) -> None:
        self.store = store
        self.keys = keys
        self.revision = 0
        #: per collection ("tools", "schedules", "members", "requests", "claims"): bumped on each change
        self.versions: dict[str, int] = dict.fromkeys(("tools", "schedules", "members", "requests", "claims"), 0)
        self.tools: dict[str, Tool] = {}
        #: the schedules of the tools in ``tools``: a schedule whose tool is missing or unreadable is
        #: kept aside (its slots could never be claimed, and each would be logged as missed) until it is
        self.schedules: dict[str, Schedule] = {}
        self._stored_schedules: dict[str, Schedule] = {}
        self.members: dict[str, Member] = {}
        self.requests: dict[str, RunRequest] = {}
        #: claim key -> (claim, mod_revision)
        self.claims: dict[str, tuple[Claim, int]] = {}
        self.recorded: OrderedDict[str, None] = OrderedDict()
        self._mod: dict[str, int] = {}
        #: keys holding no readable record -> the mod_revision of the value logged (each is logged once)
        self._bad: dict[str, int] = {}
        self._changed = trio.Event()
        self._collections: list[tuple[str, str, type[Record], dict[str, object]]] = [
            ("tools", keys.tools, Tool, self.tools),  # type: ignore[list-item]
            ("schedules", keys.schedules, Schedule, self._stored_schedules),  # type: ignore[list-item]
            ("members", keys.members, Member, self.members),  # type: ignore[list-item]
            ("requests", keys.requests, RunRequest, self.requests),  # type: ignore[list-item]
        ]

    # -- reading -------------------------------------------------------------

    def claims_of(self, tool: str) -> list[Claim]:
        prefix = self.keys.claims_of(tool)
        return [claim for key, (claim, _) in self.claims.items() if key.startswith(prefix)]

    def is_recorded(self, run_key: str) -> bool:
        return run_key in self.recorded

    def note_recorded(self, run_key: str) -> None:
        self.recorded[run_key] = None
        self.recorded.move_to_end(run_key)
        while len(self.recorded) > RECORDED_MEMORY:
            self.recorded.popitem(last=False)

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # -- keeping current ---------------------------------------------------------

    def _parse(self, kv: KeyValue, record: type[R], root: str) -> R | None:
        """The record at ``kv``; None (logged once per value written) when it holds none."""
        try:
            parsed = parse_at(kv, record, root)
        except MaomaoError as exc:
            if self._bad.get(kv.key) != kv.mod_revision:
                self._bad[kv.key] = kv.mod_revision
                shown = shown_key(kv.key)
                log.error("ignoring %s (the rest goes on): %s", shown, str(exc).removeprefix(f"{shown}: "))
            return None
        self._forget_bad(kv.key)
        return parsed

    def unreadable(self, key: str) -> bool:
        """Whether ``key`` holds a value that is no readable record (it was logged)."""
        return key in self._bad

    def _forget_bad(self, key: str) -> None:
        """A key fixed or deleted: what was logged about it is no longer needed."""
        self._bad.pop(key, None)

    def apply(self, event: Event) -> None:
        """Fold one change in (idempotent, ignores events older than what it has)."""
        key = event.kv.key
        if event.type == "put" and key.startswith(self.keys.all_runs):
            self.note_recorded(key)
            return
        if self._mod.get(key, 0) >= event.revision:
            return
        self._mod[key] = event.revision
        if key.startswith(self.keys.claims):
            self.versions["claims"] += 1
            if event.type == "delete":
                self.claims.pop(key, None)
                self._forget_bad(key)
            else:
                claim = self._parse(event.kv, Claim, self.keys.claims)
                if claim is not None:
                    self.claims[key] = (claim, event.kv.mod_revision)
        else:
            for collection, prefix, record, target in self._collections:
                if key.startswith(prefix):
                    name = key[len(prefix) :]
                    parsed = self._parse(event.kv, record, prefix) if event.type == "put" else None
                    if event.type == "delete":
                        self._forget_bad(key)
                    if parsed is None:
                        target.pop(name, None)
                    else:
                        target[name] = parsed
                    self.versions[collection] += 1
                    if collection in ("tools", "schedules"):
                        self._schedule_follows_tool(name)
                    break
            else:
                return
        self._changed.set()
        self._changed = trio.Event()

    def _schedule_follows_tool(self, name: str) -> None:
        """Show ``name``'s schedule while its tool is readable; keep it aside while it is not."""
        stored = self._stored_schedules.get(name)
        if stored is not None and name in self.tools:
            if self.schedules.get(name) is not stored:
                self.schedules[name] = stored
                self.versions["schedules"] += 1
        elif self.schedules.pop(name, None) is not None:
            self.versions["schedules"] += 1

    async def load(self) -> None:
        """Read every collection afresh."""
        for mapping in (self.tools, self.schedules, self._stored_schedules, self.members, self.requests, self.claims):
            mapping.clear()
        self._mod.clear()
        revisions = []
        for prefix in (self.keys.tools, self.keys.schedules, self.keys.members, self.keys.requests, self.keys.claims):
            result = await self.store.range(prefix)
            revisions.append(result.revision)
            for kv in result.kvs:
                self.apply(Event("put", kv))
        self.revision = min(revisions)
        self._changed.set()
        self._changed = trio.Event()

    async def _load_until_answered(self) -> None:
        while True:
            try:
                await self.load()
                return
            except StoreUnavailable as exc:
                log.warning("state cache: %s; retrying", exc)
                await trio.sleep(1)

    async def follow(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load, report started, then apply every change until cancelled."""
        await self._load_until_answered()
        task_status.started()
        while True:
            try:
                async with contextlib.aclosing(self.store.watch(self.keys.prefix, self.revision + 1)) as events:  # type: ignore[type-var]
                    async for event in events:
                        self.revision = max(self.revision, event.revision)
                        self.apply(event)
            except Compacted as exc:
                log.warning("state cache: %s; reloading", exc)
            except StoreUnavailable as exc:
                log.warning("state cache: %s; retrying", exc)
                await trio.sleep(1)
                continue
            await self._load_until_answered()
